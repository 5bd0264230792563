//! The tenant API, `tenant.mysimbdp.io/v1alpha1`: how a tenant's owners stage files and read
//! the platform's records about them (files and their fate, rejected files' content, stream
//! reports, the monitor's decisions) with nothing but their own kubeconfig.
//!
//! It is served by the operator behind the Kubernetes API server (API aggregation: an
//! APIService routes the group to the operator's Service). The API server authenticates the
//! caller however the cluster does (certificates, tokens, OIDC) and tells the operator who it
//! is through its front proxy; the operator asks the cluster's RBAC, with a SubjectAccessReview,
//! whether that caller may do what it asks in that tenant's namespace. So `kubectl auth can-i`,
//! RoleBindings, audit logs and `kubectl get --raw` work as for any other API, owners see only
//! their tenant's namespace, and a platform admin (bound cluster-wide) sees every tenant.
//!
//! Resources (under `/apis/tenant.mysimbdp.io/v1alpha1`):
//!
//! | path | verb (RBAC) | what |
//! | --- | --- | --- |
//! | `namespaces/{ns}/files`, `files` | list | the tenant's (every tenant's) staged files and their fate |
//! | `namespaces/{ns}/files/{id}/content` | get `files/content` | a staged file's bytes, e.g. a rejected one's |
//! | `namespaces/{ns}/uploads/{name}` (PUT) | update `uploads` | stage a file, streamed, atomically |
//! | `namespaces/{ns}/reports`, `reports` | list | stream apps' reports |
//! | `namespaces/{ns}/decisions`, `decisions` | list | the monitor's decisions |

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use kube::{Api, runtime::reflector::Store};
use mysimbdp_api::Tenant;
use tracing::{error, info};

use crate::{context::Context, k8s, monitor::store::MonitorStore, shutdown::Shutdown};

pub mod auth;
pub mod routes;
pub mod tls;

/// The API group.
pub const GROUP: &str = "tenant.mysimbdp.io";
/// The API version.
pub const VERSION: &str = "v1alpha1";

/// Where and how the tenant API serves.
#[derive(Debug, Clone)]
pub struct TenantApiConfig {
    /// The listening address.
    pub addr: SocketAddr,
    /// The serving certificate (PEM, chain).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// What the handlers share.
pub struct ApiState {
    /// The controllers' context (staging, ledger, platform database).
    pub ctx: Arc<Context>,
    /// Every tenant, to find the tenant of a namespace.
    pub tenants: Store<Tenant>,
    /// Decides each request.
    pub authorizer: Arc<dyn auth::Authorizer>,
    /// Reports and decisions.
    pub monitor: MonitorStore,
}

/// Serves the tenant API until `shutdown`; logs and returns when it cannot.
pub async fn run(ctx: Arc<Context>, config: TenantApiConfig, shutdown: Shutdown) {
    let (cas, names) = match tls::front_proxy(&ctx.client).await {
        Ok(front) => front,
        Err(e) => {
            error!("the tenant API cannot start: {e}");
            return;
        }
    };
    let acceptor = match tls::acceptor(&config.cert, &config.key, cas, names) {
        Ok(acceptor) => acceptor,
        Err(e) => {
            error!("the tenant API cannot start: {e}");
            return;
        }
    };
    let monitor = match MonitorStore::open(&ctx.platform_db).await {
        Ok(store) => store,
        Err(e) => {
            error!("the tenant API cannot open the platform's records: {e}");
            return;
        }
    };
    let tenants = k8s::cache(Api::<Tenant>::all(ctx.client.clone())).await;
    let authorizer = Arc::new(auth::SubjectAccessReviews::new(ctx.client.clone()));
    let state = Arc::new(ApiState { ctx, tenants, authorizer, monitor });
    info!(addr = %config.addr, "tenant API serving {GROUP}/{VERSION}");
    if let Err(e) = tls::serve(config.addr, acceptor, routes::router(state), shutdown).await {
        error!("the tenant API stopped: {e}");
    }
}
