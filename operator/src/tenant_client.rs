//! The CLI's client of the tenant API: requests to `tenant.mysimbdp.io` through the Kubernetes
//! API server, authenticated exactly as `kubectl` is with the same kubeconfig (certificate,
//! token, exec plugin), with request bodies streamed from disk so that a large file is never
//! held in memory.

use std::path::Path;

use bytes::Bytes;
use futures::TryStreamExt;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Empty, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::{client::legacy::Client, rt::TokioExecutor};
use kube::client::ConfigExt;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;
use tokio_util::io::ReaderStream;
use tower::{BoxError, ServiceBuilder, ServiceExt, util::BoxCloneService};

use crate::tenant_api::{GROUP, VERSION};

type RequestBody = BoxBody<Bytes, BoxError>;
type Service = BoxCloneService<Request<RequestBody>, Response<Incoming>, BoxError>;

/// Why a request to the tenant API failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The kubeconfig cannot be used.
    #[error("cannot use the kubeconfig: {0}")]
    Config(String),
    /// The request did not reach the API server, or no answer came back.
    #[error("cannot reach the API server for {path}: {reason}")]
    Transport {
        /// The request's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The API refused or failed the request; its own message.
    #[error("{message}")]
    Refused {
        /// The HTTP status.
        code: u16,
        /// The API's message.
        message: String,
    },
    /// A local file cannot be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A client of the tenant API.
#[derive(Clone)]
pub struct TenantClient {
    service: Service,
}

/// The path of `resource` of the API, in `namespace` or across all.
pub fn path(namespace: Option<&str>, resource: &str) -> String {
    match namespace {
        Some(ns) => format!("/apis/{GROUP}/{VERSION}/namespaces/{ns}/{resource}"),
        None => format!("/apis/{GROUP}/{VERSION}/{resource}"),
    }
}

impl TenantClient {
    /// A client as the kubeconfig says (`KUBECONFIG`, `~/.kube/config` or in-cluster; a given
    /// `context`).
    pub async fn new(context: Option<String>) -> Result<Self, ClientError> {
        let options = kube::config::KubeConfigOptions { context, ..Default::default() };
        let config = match kube::Config::from_kubeconfig(&options).await {
            Ok(config) => config,
            Err(_) => kube::Config::infer().await.map_err(|e| ClientError::Config(e.to_string()))?,
        };
        let connector = config.openssl_https_connector().map_err(|e| ClientError::Config(e.to_string()))?;
        let http = Client::builder(TokioExecutor::new()).build::<_, RequestBody>(connector);
        let service = ServiceBuilder::new()
            .layer(config.base_uri_layer())
            .layer(config.extra_headers_layer().map_err(|e| ClientError::Config(e.to_string()))?)
            .option_layer(config.auth_layer().map_err(|e| ClientError::Config(e.to_string()))?)
            .map_err(BoxError::from)
            .service(http);
        Ok(Self { service: BoxCloneService::new(service) })
    }

    async fn send(&self, request: Request<RequestBody>) -> Result<Response<Incoming>, ClientError> {
        let path = request.uri().path().to_owned();
        let response = self
            .service
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| ClientError::Transport { path: path.clone(), reason: e.to_string() })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let code = response.status();
        let body = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| match code {
                StatusCode::NOT_FOUND | StatusCode::SERVICE_UNAVAILABLE => format!(
                    "{path}: {code}; is the tenant API served (the chart's tenantApi.enabled, `kubectl get apiservice v1alpha1.{GROUP}`)?"
                ),
                _ => format!("{path}: {code} {}", String::from_utf8_lossy(&body)),
            });
        Err(ClientError::Refused { code: code.as_u16(), message })
    }

    fn empty() -> RequestBody {
        Empty::new().map_err(BoxError::from).boxed()
    }

    /// GETs `path?query` and decodes the JSON answer's `items`.
    pub async fn list<T: DeserializeOwned>(&self, path: &str, query: &[(&str, String)]) -> Result<Vec<T>, ClientError> {
        let query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", url_escape(v))).collect();
        let uri = if query.is_empty() { path.to_owned() } else { format!("{path}?{}", query.join("&")) };
        let request = Request::get(&uri).body(Self::empty()).map_err(|e| ClientError::Config(e.to_string()))?;
        let body = self
            .send(request)
            .await?
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport { path: path.to_owned(), reason: e.to_string() })?;
        #[derive(serde::Deserialize)]
        struct List<T> {
            items: Vec<T>,
        }
        let list: List<T> = serde_json::from_slice(&body.to_bytes())
            .map_err(|e| ClientError::Transport { path: path.to_owned(), reason: format!("unexpected answer: {e}") })?;
        Ok(list.items)
    }

    /// Stages `file` as `name` in `namespace`, streamed from disk; the bytes staged.
    pub async fn upload(&self, namespace: &str, name: &str, file: &Path) -> Result<u64, ClientError> {
        let io = |source| ClientError::Io { path: file.display().to_string(), source };
        let opened = tokio::fs::File::open(file).await.map_err(io)?;
        let length = opened.metadata().await.map_err(io)?.len();
        let frames = ReaderStream::with_capacity(opened, 256 * 1024).map_ok(Frame::data).map_err(BoxError::from);
        let body = BodyExt::boxed(StreamBody::new(frames));
        let uri = format!("{}/{}", path(Some(namespace), "uploads"), url_escape(name));
        let request = Request::put(&uri)
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, length)
            .body(body)
            .map_err(|e| ClientError::Config(e.to_string()))?;
        self.send(request).await?;
        Ok(length)
    }

    /// Writes a staged file's content to `out`; the bytes written and the reason it was
    /// refused, if it was.
    pub async fn download(&self, namespace: &str, id: &str, out: &Path) -> Result<(u64, Option<String>), ClientError> {
        let uri = format!("{}/{}/content", path(Some(namespace), "files"), url_escape(id));
        let request = Request::get(&uri).body(Self::empty()).map_err(|e| ClientError::Config(e.to_string()))?;
        let response = self.send(request).await?;
        let reason = response.headers().get("x-mysimbdp-reason").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let io = |source| ClientError::Io { path: out.display().to_string(), source };
        let mut target = tokio::fs::File::create(out).await.map_err(io)?;
        let mut body = response.into_body();
        let mut written = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ClientError::Transport { path: uri.clone(), reason: e.to_string() })?;
            if let Ok(data) = frame.into_data() {
                target.write_all(&data).await.map_err(io)?;
                written += data.len() as u64;
            }
        }
        target.flush().await.map_err(io)?;
        Ok((written, reason))
    }
}

/// `text` with the characters a URL path segment or query value cannot hold percent-encoded.
fn url_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_and_paths_scoped() {
        assert_eq!(url_escape("flights 2013/01.csv"), "flights%202013%2F01.csv");
        assert_eq!(
            path(Some("tenant-acme-air"), "files"),
            "/apis/tenant.mysimbdp.io/v1alpha1/namespaces/tenant-acme-air/files"
        );
        assert_eq!(path(None, "files"), "/apis/tenant.mysimbdp.io/v1alpha1/files");
    }
}
