//! Who asks, and may they: the caller's identity as the Kubernetes API server authenticated it
//! (the front proxy's `X-Remote-User`/`X-Remote-Group`/`X-Remote-Extra-*` headers, trusted only
//! on a connection whose client certificate the API server's request-header CA signed), and the
//! cluster's own RBAC deciding each request through a SubjectAccessReview. The platform keeps
//! no list of who may do what: owners are bound to roles in their tenant's namespace.

use std::collections::BTreeMap;

use async_trait::async_trait;
use http::HeaderMap;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec, SubjectAccessReviewStatus,
};
use kube::{Api, api::PostParams};

use super::GROUP;

/// A caller as the API server authenticated it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The user name.
    pub user: String,
    /// Its groups.
    pub groups: Vec<String>,
    /// Extra attributes (e.g. a ServiceAccount token's pod), by key.
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The caller the front proxy names in `headers`, or `None` when it names none.
pub fn caller(headers: &HeaderMap) -> Option<Caller> {
    let text = |value: &http::HeaderValue| value.to_str().ok().map(str::to_owned);
    let user = headers.get("x-remote-user").and_then(text).filter(|u| !u.is_empty())?;
    let groups = headers.get_all("x-remote-group").iter().filter_map(text).collect();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix("x-remote-extra-")
            && let Some(value) = text(value)
        {
            // Keys are percent-encoded by the proxy (RFC 3986 unreserved characters only).
            extra.entry(percent_decode(key)).or_default().push(value);
        }
    }
    Some(Caller { user, groups, extra })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a request would do, in the terms of an RBAC rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `get`, `list`, `create`.
    pub verb: &'static str,
    /// `files`, `uploads`, `reports`, `decisions`.
    pub resource: &'static str,
    /// `content` for a file's bytes.
    pub subresource: Option<&'static str>,
    /// The tenant's namespace; none for the whole platform.
    pub namespace: Option<String>,
    /// The object, when one is named.
    pub name: Option<String>,
}

impl Access {
    /// `verb group/resource[/subresource] [name] in namespace`, for messages.
    pub fn describe(&self) -> String {
        let sub = self.subresource.map(|s| format!("/{s}")).unwrap_or_default();
        let name = self.name.as_ref().map(|n| format!(" {n:?}")).unwrap_or_default();
        let scope =
            self.namespace.as_ref().map_or_else(|| " across all tenants".to_owned(), |n| format!(" in namespace {n}"));
        format!("{} {}.{GROUP}{sub}{name}{scope}", self.verb, self.resource)
    }
}

/// Why an authorization could not be decided.
#[derive(Debug, thiserror::Error)]
#[error("cannot ask the API server whether {user} may {access}: {source}")]
pub struct AuthorizeError {
    user: String,
    access: String,
    source: kube::Error,
}

/// Decides whether a caller may do something.
#[async_trait]
pub trait Authorizer: Send + Sync {
    /// `Ok(None)` when allowed; `Ok(Some(reason))` when not.
    async fn check(&self, caller: &Caller, access: &Access) -> Result<Option<String>, AuthorizeError>;
}

/// The cluster's RBAC, asked through a SubjectAccessReview for each request.
pub struct SubjectAccessReviews {
    client: kube::Client,
}

impl SubjectAccessReviews {
    /// Reviews through `client` (the operator's identity needs `create` on
    /// subjectaccessreviews).
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl Authorizer for SubjectAccessReviews {
    async fn check(&self, caller: &Caller, access: &Access) -> Result<Option<String>, AuthorizeError> {
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(caller.user.clone()),
                groups: Some(caller.groups.clone()),
                extra: Some(caller.extra.clone()),
                resource_attributes: Some(ResourceAttributes {
                    group: Some(GROUP.to_owned()),
                    resource: Some(access.resource.to_owned()),
                    subresource: access.subresource.map(str::to_owned),
                    verb: Some(access.verb.to_owned()),
                    namespace: access.namespace.clone(),
                    name: access.name.clone(),
                    ..ResourceAttributes::default()
                }),
                ..SubjectAccessReviewSpec::default()
            },
            ..SubjectAccessReview::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let reviewed = api.create(&PostParams::default(), &review).await.map_err(|source| AuthorizeError {
            user: caller.user.clone(),
            access: access.describe(),
            source,
        })?;
        let status: SubjectAccessReviewStatus = reviewed.status.unwrap_or_default();
        Ok((!status.allowed).then(|| {
            let why = status.reason.filter(|r| !r.is_empty()).unwrap_or_else(|| "no RBAC rule allows it".to_owned());
            format!("{} may not {}: {why}", caller.user, access.describe())
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_proxy_headers_name_the_caller() {
        let mut headers = HeaderMap::new();
        headers.insert("x-remote-user", "acme-owner".parse().unwrap());
        headers.append("x-remote-group", "acme-air-team".parse().unwrap());
        headers.append("x-remote-group", "system:authenticated".parse().unwrap());
        headers.insert("x-remote-extra-authentication.kubernetes.io%2fpod-name", "p".parse().unwrap());
        let caller = caller(&headers).unwrap();
        assert_eq!(caller.user, "acme-owner");
        assert_eq!(caller.groups, ["acme-air-team", "system:authenticated"]);
        assert_eq!(caller.extra["authentication.kubernetes.io/pod-name"], ["p"]);
        assert_eq!(super::caller(&HeaderMap::new()), None, "no user, no caller");
    }

    #[test]
    fn accesses_read_like_rbac_rules() {
        let access = Access {
            verb: "get",
            resource: "files",
            subresource: Some("content"),
            namespace: Some("tenant-acme-air".into()),
            name: Some("f1".into()),
        };
        assert_eq!(access.describe(), "get files.tenant.mysimbdp.io/content \"f1\" in namespace tenant-acme-air");
    }
}
