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

/// The YAML of a CRD as kept in `crds/`.
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    Ok(format!("{GENERATED_HEADER}{}", serde_yaml::to_string(crd)?))
}
