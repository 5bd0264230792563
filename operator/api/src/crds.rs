//! The CustomResourceDefinitions generated from the types, and their YAML as kept in `crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::CustomResourceExt;

use crate::{BatchIngestApp, StreamIngestApp, Tenant};

/// Header of every generated file; it tells readers not to edit the file by hand.
pub const GENERATED_HEADER: &str = "# Generated from operator/api by `make crds`; do not edit.\n";

/// Every CRD of the API.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![Tenant::crd(), BatchIngestApp::crd(), StreamIngestApp::crd()]
}

/// The file name of a CRD in `crds/`: `<plural>.<group>.yaml`.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

/// The YAML of a CRD as kept in `crds/`, keys sorted so that the output does not depend on
/// whether another crate of the build made JSON maps keep insertion order.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    let value = serde_json::to_value(crd).map_err(<serde_yaml::Error as serde::ser::Error>::custom)?;
    Ok(format!("{GENERATED_HEADER}{}", serde_yaml::to_string(&sorted(value))?))
}

fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<(String, serde_json::Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}
