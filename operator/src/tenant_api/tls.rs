//! The tenant API's TLS: the operator serves with its own certificate (the one the APIService's
//! `caBundle` vouches for), and accepts only clients whose certificate the API server's
//! request-header CA signed, with a name it allows: the API server's front proxy, which alone
//! may tell who the caller is. Both come from the cluster's
//! `kube-system/extension-apiserver-authentication` ConfigMap, as every extension API server
//! reads them.

use std::{net::SocketAddr, path::Path, pin::Pin, sync::Arc};

use axum::Router;
use hyper_util::{rt::TokioExecutor, rt::TokioIo, server::conn::auto::Builder, service::TowerToHyperService};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use openssl::{
    nid::Nid,
    ssl::{Ssl, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode},
    x509::{X509, store::X509StoreBuilder},
};
use tokio::net::TcpListener;
use tokio_openssl::SslStream;
use tracing::{debug, warn};

use crate::shutdown::Shutdown;

/// Why the tenant API cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The cluster's front-proxy settings cannot be read.
    #[error(
        "cannot read kube-system/extension-apiserver-authentication ({source}); the operator's ServiceAccount needs the extension-apiserver-authentication-reader Role in kube-system"
    )]
    ReadCa {
        /// The client's error.
        source: kube::Error,
    },
    /// The ConfigMap holds no request-header CA: the API server has no front proxy configured.
    #[error(
        "kube-system/extension-apiserver-authentication has no requestheader-client-ca-file: the API server is not set up for aggregation (--requestheader-client-ca-file)"
    )]
    NoRequestHeaderCa,
    /// OpenSSL refused a certificate, key or setting.
    #[error("TLS of the tenant API: cannot {what}: {source}")]
    OpenSsl {
        /// What was being done.
        what: String,
        /// OpenSSL's error.
        source: openssl::error::ErrorStack,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr} for the tenant API: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn ssl(what: impl Into<String>) -> impl FnOnce(openssl::error::ErrorStack) -> TlsError {
    let what = what.into();
    move |source| TlsError::OpenSsl { what, source }
}

/// The front proxy's CA certificates and allowed names, from the cluster.
pub async fn front_proxy(client: &kube::Client) -> Result<(Vec<X509>, Vec<String>), TlsError> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    let map = maps.get("extension-apiserver-authentication").await.map_err(|source| TlsError::ReadCa { source })?;
    let data = map.data.unwrap_or_default();
    let pem = data.get("requestheader-client-ca-file").filter(|p| !p.is_empty()).ok_or(TlsError::NoRequestHeaderCa)?;
    let cas = X509::stack_from_pem(pem.as_bytes()).map_err(ssl("read the request-header CA"))?;
    let names = data
        .get("requestheader-allowed-names")
        .and_then(|n| serde_json::from_str::<Vec<String>>(n).ok())
        .unwrap_or_default();
    Ok((cas, names))
}

/// An acceptor serving `cert`/`key` that requires a client certificate signed by one of
/// `client_cas` whose common name is among `allowed_names` (any name when there are none).
pub fn acceptor(
    cert: &Path,
    key: &Path,
    client_cas: Vec<X509>,
    allowed_names: Vec<String>,
) -> Result<SslAcceptor, TlsError> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).map_err(ssl("set up TLS"))?;
    builder
        .set_certificate_chain_file(cert)
        .map_err(ssl(format!("read the serving certificate {}", cert.display())))?;
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .map_err(ssl(format!("read the serving key {}", key.display())))?;
    let mut store = X509StoreBuilder::new().map_err(ssl("make a certificate store"))?;
    for ca in client_cas {
        store.add_cert(ca).map_err(ssl("trust the request-header CA"))?;
    }
    builder.set_verify_cert_store(store.build()).map_err(ssl("trust the request-header CA"))?;
    builder.set_verify_callback(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT, move |ok, context| {
        if !ok || context.error_depth() > 0 || allowed_names.is_empty() {
            return ok;
        }
        let Some(cert) = context.current_cert() else { return false };
        let names: Vec<String> = cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
            .collect();
        names.iter().any(|n| allowed_names.contains(n))
    });
    Ok(builder.build())
}

/// Serves `router` over TLS on `addr` until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    acceptor: SslAcceptor,
    router: Router,
    shutdown: Shutdown,
) -> Result<(), TlsError> {
    let listener = TcpListener::bind(addr).await.map_err(|source| TlsError::Bind { addr, source })?;
    let acceptor = Arc::new(acceptor);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.wait() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    warn!(%error, "the tenant API cannot accept a connection");
                    continue;
                }
            },
        };
        let (acceptor, router) = (acceptor.clone(), router.clone());
        tokio::spawn(async move {
            let Ok(ssl) = Ssl::new(acceptor.context()) else { return };
            let Ok(mut stream) = SslStream::new(ssl, stream) else { return };
            if let Err(error) = Pin::new(&mut stream).accept().await {
                // Anyone but the API server's front proxy ends here.
                debug!(%peer, %error, "refused a TLS connection to the tenant API");
                return;
            }
            let service = TowerToHyperService::new(router);
            if let Err(error) = Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await
            {
                debug!(%peer, %error, "a tenant API connection ended with an error");
            }
        });
    }
}
