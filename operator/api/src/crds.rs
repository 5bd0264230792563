//! The CustomResourceDefinitions generated from the types, and their YAML as kept in `crds/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::core::CustomResourceExt;

use crate::{BatchIngestApp, StreamIngestApp, Tenant};

/// Header of every generated file; it tells readers not to edit the file by hand.
pub const GENERATED_HEADER: &str = "# Generated from operator/api by `make crds`; do not edit.\n";

/// Every CRD of the API.
pub fn all() -> Vec<CustomResourceDefinition> {
    [Tenant::crd(), BatchIngestApp::crd(), StreamIngestApp::crd()].into_iter().map(with_kubernetes_formats).collect()
}

/// The CRD with integer formats the API server knows. Unsigned Rust integers get the formats
/// `uint32`/`uint64` from the schema generator, which Kubernetes does not recognise (every
/// `kubectl apply` of the CRD would warn about them); their lower bound is already in the
/// schema as `minimum: 0`, so they become `int32`/`int64`. Counts never reach the signed
/// types' maxima.
fn with_kubernetes_formats(crd: CustomResourceDefinition) -> CustomResourceDefinition {
    fn rewrite(value: &mut serde_json::Value) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(format) = map.get_mut("format") {
                    match format.as_str() {
                        Some("uint32" | "uint16" | "uint8") => *format = "int32".into(),
                        Some("uint64" | "uint") => *format = "int64".into(),
                        _ => {}
                    }
                }
                map.values_mut().for_each(rewrite);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(rewrite),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else { return crd };
    rewrite(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
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
