//! The tenant API's requests: discovery, then each resource, every request authorized for its
//! caller before anything is read or written, answers as JSON lists and errors as Kubernetes
//! `Status` objects (so `kubectl` shows their message).

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, put},
};
use futures::TryStreamExt;
use kube::ResourceExt;
use mongodb::bson::{Document, doc};
use mysimbdp_api::Tenant;
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use super::{
    ApiState, GROUP, VERSION,
    auth::{Access, caller},
};
use crate::{
    batch::{ledger::FileStatus, schedule::folder_of},
    staging::{Location, StagingError},
    tenant::names::TenantNames,
};

/// Most records one list answers with.
const MAX_LIMIT: usize = 10_000;

/// A refusal or failure, answered as a Kubernetes `Status`.
#[derive(Debug)]
pub struct ApiError {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl ApiError {
    fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Self { code, reason, message: message.into() }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code.as_u16(),
        });
        (self.code, Json(status)).into_response()
    }
}

type Answer<T = Response> = Result<T, ApiError>;

/// The routes of the API.
pub fn router(state: Arc<ApiState>) -> Router {
    let base = format!("/apis/{GROUP}/{VERSION}");
    Router::new()
        .route(&base, get(discovery))
        .route(&format!("{base}/files"), get(all_files))
        .route(&format!("{base}/namespaces/{{namespace}}/files"), get(files))
        .route(&format!("{base}/namespaces/{{namespace}}/files/{{id}}/content"), get(content))
        .route(&format!("{base}/namespaces/{{namespace}}/uploads/{{name}}"), put(upload))
        .route(&format!("{base}/reports"), get(all_reports))
        .route(&format!("{base}/namespaces/{{namespace}}/reports"), get(reports))
        .route(&format!("{base}/decisions"), get(all_decisions))
        .route(&format!("{base}/namespaces/{{namespace}}/decisions"), get(decisions))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "NotFound", "no such resource in tenant.mysimbdp.io/v1alpha1")
        })
        .with_state(state)
}

/// The resources, for `kubectl api-resources` and the API server's discovery.
async fn discovery() -> Json<Value> {
    let resource = |name: &str, kind: &str, verbs: &[&str]| json!({ "name": name, "singularName": "", "namespaced": true, "kind": kind, "verbs": verbs });
    Json(json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": format!("{GROUP}/{VERSION}"),
        "resources": [
            resource("files", "StagedFile", &["list"]),
            resource("files/content", "StagedFile", &["get"]),
            resource("uploads", "Upload", &["update"]),
            resource("reports", "Report", &["list"]),
            resource("decisions", "Decision", &["list"]),
        ],
    }))
}

/// Checks that the caller may do `access`; returns the caller's name.
async fn authorize(state: &ApiState, headers: &HeaderMap, access: Access) -> Answer<String> {
    let Some(caller) = caller(headers) else {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", "the request names no user"));
    };
    match state.authorizer.check(&caller, &access).await {
        Ok(None) => Ok(caller.user),
        Ok(Some(reason)) => {
            info!(user = %caller.user, access = %access.describe(), "refused");
            Err(ApiError::new(StatusCode::FORBIDDEN, "Forbidden", reason))
        }
        Err(e) => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", e.to_string())),
    }
}

/// The tenant whose namespace is `namespace`.
fn tenant_of(state: &ApiState, namespace: &str) -> Answer<Arc<Tenant>> {
    state.tenants.state().into_iter().find(|t| TenantNames::of(t).namespace == namespace).ok_or_else(|| {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", format!("namespace {namespace} belongs to no tenant"))
    })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", e.to_string())
}

fn list(kind: &str, items: impl serde::Serialize) -> Response {
    Json(json!({ "kind": format!("{kind}List"), "apiVersion": format!("{GROUP}/{VERSION}"), "items": items }))
        .into_response()
}

/// Filters of a list.
#[derive(Debug, Deserialize, Default)]
pub struct ListQuery {
    /// Files in this state only.
    status: Option<String>,
    /// Reports or decisions of this app only.
    app: Option<String>,
    /// A tenant only (platform-wide lists).
    tenant: Option<String>,
    /// At most this many, newest kept.
    limit: Option<usize>,
}

impl ListQuery {
    fn limit(&self, default: usize) -> usize {
        self.limit.unwrap_or(default).clamp(1, MAX_LIMIT)
    }

    fn filter(&self, tenant: Option<&str>, keys: &[&str]) -> Document {
        let mut filter = doc! {};
        if let Some(tenant) = tenant.or(self.tenant.as_deref()) {
            filter.insert("tenant", tenant);
        }
        for key in keys {
            let value = match *key {
                "status" => &self.status,
                "app" => &self.app,
                _ => &None,
            };
            if let Some(value) = value {
                filter.insert(*key, value.as_str());
            }
        }
        filter
    }
}

fn access(verb: &'static str, resource: &'static str, namespace: Option<&str>) -> Access {
    Access { verb, resource, subresource: None, namespace: namespace.map(str::to_owned), name: None }
}

async fn file_list(state: &ApiState, tenant: Option<&str>, query: &ListQuery) -> Answer {
    let mut files = state.ctx.ledger.files(query.filter(tenant, &["status"])).await.map_err(internal)?;
    let limit = query.limit(MAX_LIMIT);
    if files.len() > limit {
        files.drain(..files.len() - limit);
    }
    Ok(list("StagedFile", files))
}

async fn files(
    State(state): State<Arc<ApiState>>,
    Path(namespace): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Answer {
    authorize(&state, &headers, access("list", "files", Some(&namespace))).await?;
    let tenant = tenant_of(&state, &namespace)?;
    file_list(&state, Some(&tenant.name_any()), &query).await
}

async fn all_files(State(state): State<Arc<ApiState>>, Query(query): Query<ListQuery>, headers: HeaderMap) -> Answer {
    authorize(&state, &headers, access("list", "files", None)).await?;
    file_list(&state, None, &query).await
}

/// A staged file's bytes, streamed from the store, with its reason when it was refused.
async fn content(
    State(state): State<Arc<ApiState>>,
    Path((namespace, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    let mut wanted = access("get", "files", Some(&namespace));
    wanted.subresource = Some("content");
    wanted.name = Some(id.clone());
    authorize(&state, &headers, wanted).await?;
    let tenant = tenant_of(&state, &namespace)?.name_any();
    let record = state
        .ctx
        .ledger
        .files(doc! { "_id": &id, "tenant": &tenant })
        .await
        .map_err(internal)?
        .into_iter()
        .next()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "NotFound", format!("tenant {tenant} has no file {id}")))?;
    let location = Location::incoming(&tenant, &record.name).moved(folder_of(record.status), &record.id);
    let stream = state.ctx.staging.read_stream(&location).await.map_err(|e| match e {
        StagingError::Store { source: object_store::Error::NotFound { .. }, .. } => ApiError::new(
            StatusCode::GONE,
            "Gone",
            format!("file {id} ({}) is no longer in the staging store (removed by retention)", record.name),
        ),
        other => internal(other),
    })?;
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, "application/octet-stream".parse().map_err(internal)?);
    if let Ok(disposition) = format!("attachment; filename=\"{}\"", record.name.replace('"', "")).parse() {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    if record.status == FileStatus::Rejected || record.status == FileStatus::DeadLettered {
        let reason: String = record.reason.unwrap_or_default().chars().filter(|c| !c.is_control()).take(2000).collect();
        if let Ok(value) = reason.parse() {
            headers.insert("x-mysimbdp-reason", value);
        }
    }
    Ok(response)
}

/// Stages one file from the request body, as it streams in.
async fn upload(
    State(state): State<Arc<ApiState>>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Answer {
    // A PUT of a named object is an `update` to the API server's authorization, which has
    // already allowed it; the same question is asked again here.
    let mut wanted = access("update", "uploads", Some(&namespace));
    wanted.name = Some(name.clone());
    let user = authorize(&state, &headers, wanted).await?;
    let tenant = tenant_of(&state, &namespace)?;
    // One upload holds at most what the tenant may stage in a day; the agreement's checks
    // (size, format, names...) then decide on the file, and keep it with its reason if refused.
    let max = tenant.spec.agreement.files.max_bytes_per_day.ceil_u64();
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(declared) = declared.filter(|d| *d > max) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            format!(
                "{name:?} is {declared} bytes; tenant {} may stage at most {max} bytes a day (spec.agreement.files.maxBytesPerDay); split it",
                tenant.name_any()
            ),
        ));
    }
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    match state.ctx.staging.upload_stream(&tenant.name_any(), &name, Box::pin(stream), max).await {
        Ok((location, bytes)) => {
            info!(%user, tenant = %tenant.name_any(), file = %name, bytes, "staged a file");
            let body = json!({ "kind": "Upload", "apiVersion": format!("{GROUP}/{VERSION}"),
                               "name": name, "bytes": bytes, "location": location.path() });
            Ok((StatusCode::CREATED, Json(body)).into_response())
        }
        Err(StagingError::Refused { name, reason }) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            format!("{name:?} was not staged: {reason}"),
        )),
        Err(e) => {
            warn!(tenant = %tenant.name_any(), file = %name, error = %e, "upload failed");
            Err(internal(e))
        }
    }
}

async fn report_list(state: &ApiState, tenant: Option<&str>, query: &ListQuery) -> Answer {
    let limit = i64::try_from(query.limit(100)).unwrap_or(100);
    let found = state.monitor.reports(query.filter(tenant, &["app"]), limit).await.map_err(internal)?;
    Ok(list("Report", found))
}

async fn reports(
    State(state): State<Arc<ApiState>>,
    Path(namespace): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Answer {
    authorize(&state, &headers, access("list", "reports", Some(&namespace))).await?;
    let tenant = tenant_of(&state, &namespace)?;
    report_list(&state, Some(&tenant.name_any()), &query).await
}

async fn all_reports(State(state): State<Arc<ApiState>>, Query(query): Query<ListQuery>, headers: HeaderMap) -> Answer {
    authorize(&state, &headers, access("list", "reports", None)).await?;
    report_list(&state, None, &query).await
}

async fn decision_list(state: &ApiState, tenant: Option<&str>, query: &ListQuery) -> Answer {
    let limit = i64::try_from(query.limit(100)).unwrap_or(100);
    let found = state.monitor.decisions(query.filter(tenant, &["app"]), limit).await.map_err(internal)?;
    Ok(list("Decision", found))
}

async fn decisions(
    State(state): State<Arc<ApiState>>,
    Path(namespace): Path<String>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Answer {
    authorize(&state, &headers, access("list", "decisions", Some(&namespace))).await?;
    let tenant = tenant_of(&state, &namespace)?;
    decision_list(&state, Some(&tenant.name_any()), &query).await
}

async fn all_decisions(
    State(state): State<Arc<ApiState>>,
    Query(query): Query<ListQuery>,
    headers: HeaderMap,
) -> Answer {
    authorize(&state, &headers, access("list", "decisions", None)).await?;
    decision_list(&state, None, &query).await
}
