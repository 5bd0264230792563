//! Client-side checks of a mysimbdp manifest, as strict as the API server's.
//!
//! A document is first read into the typed resource (which refuses unknown formats, negative
//! numbers and malformed sizes, naming the field), then the CEL rules of the generated schema
//! are evaluated on it, so the messages are the ones `kubectl apply` would print.

use kube::core::CustomResourceExt;
use serde::{Deserialize, de::DeserializeOwned};

use crate::{BatchIngestApp, StreamIngestApp, Tenant, constants::API_VERSION};

/// A parsed and valid mysimbdp resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Resource {
    /// A tenant and its agreement.
    Tenant(Box<Tenant>),
    /// A batch ingest app.
    BatchIngestApp(Box<BatchIngestApp>),
    /// A stream ingest app.
    StreamIngestApp(Box<StreamIngestApp>),
}

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
pub enum ValidationError {
    /// Not YAML, or not an object with `apiVersion` and `kind`.
    #[error("the document is not a Kubernetes object: {source}")]
    NotAnObject {
        /// The parser's error.
        source: serde_yaml::Error,
    },
    /// Another API.
    #[error(
        "{api_version}/{kind} is not a mysimbdp resource; expected apiVersion {API_VERSION} and kind Tenant, BatchIngestApp or StreamIngestApp"
    )]
    UnknownKind {
        /// The document's apiVersion.
        api_version: String,
        /// The document's kind.
        kind: String,
    },
    /// A field has the wrong type or value.
    #[error("{kind} {name:?}: {path}: {message}")]
    Field {
        /// The resource kind.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// Path of the offending field, e.g. `spec.agreement.files.maxFileSize`.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// One or more schema rules failed.
    #[error("{kind} {name:?}: {}", .failures.join("; "))]
    Rules {
        /// The resource kind.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// Each failed rule as `path: message`.
        failures: Vec<String>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TypeMeta {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    metadata: NameOnly,
}

#[derive(Deserialize, Default)]
struct NameOnly {
    #[serde(default)]
    name: String,
}

/// Parses one YAML document and checks it against the types and the schema's CEL rules.
pub fn validate(yaml: &str) -> Result<Resource, ValidationError> {
    let value: serde_yaml::Value =
        serde_yaml::from_str(yaml).map_err(|source| ValidationError::NotAnObject { source })?;
    let meta: TypeMeta =
        serde_yaml::from_value(value.clone()).map_err(|source| ValidationError::NotAnObject { source })?;
    if meta.api_version != API_VERSION {
        return Err(ValidationError::UnknownKind { api_version: meta.api_version, kind: meta.kind });
    }
    let name = meta.metadata.name;
    match meta.kind.as_str() {
        "Tenant" => typed::<Tenant>("Tenant", value, name).map(|t| Resource::Tenant(Box::new(t))),
        "BatchIngestApp" => {
            typed::<BatchIngestApp>("BatchIngestApp", value, name).map(|a| Resource::BatchIngestApp(Box::new(a)))
        }
        "StreamIngestApp" => {
            typed::<StreamIngestApp>("StreamIngestApp", value, name).map(|a| Resource::StreamIngestApp(Box::new(a)))
        }
        _ => Err(ValidationError::UnknownKind { api_version: meta.api_version, kind: meta.kind }),
    }
}

fn typed<K>(kind: &'static str, value: serde_yaml::Value, name: String) -> Result<K, ValidationError>
where
    K: DeserializeOwned + serde::Serialize + CustomResourceExt,
{
    let object: K = serde_path_to_error::deserialize(value).map_err(|e| ValidationError::Field {
        kind,
        name: name.clone(),
        path: e.path().to_string(),
        message: e.into_inner().to_string(),
    })?;
    kube::core::cel::validate_cel(&object).map_err(|errors| ValidationError::Rules {
        kind,
        name,
        failures: errors
            .into_vec()
            .into_iter()
            .map(|e| if e.field_path.is_empty() { e.message } else { format!("{}: {}", e.field_path, e.message) })
            .collect(),
    })?;
    Ok(object)
}
