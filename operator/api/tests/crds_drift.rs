//! `crds/` must hold exactly what the types generate: run `make crds` after changing the API.

use std::{collections::BTreeSet, path::PathBuf};

use mysimbdp_api::crds;

fn crds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crds")
}

#[test]
fn generated_crds_match_the_checked_in_files() {
    let mut expected = BTreeSet::new();
    for crd in crds::all() {
        let name = crds::file_name(&crd);
        let generated = crds::to_yaml(&crd).expect("CRD serializes");
        let path = crds_dir().join(&name);
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{} is missing ({e}); run `make crds`", path.display()));
        assert!(on_disk == generated, "{} differs from what the types generate; run `make crds`", path.display());
        expected.insert(name);
    }
    let present: BTreeSet<String> = std::fs::read_dir(crds_dir())
        .expect("crds/ exists")
        .map(|e| e.expect("readable entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml"))
        .collect();
    assert_eq!(present, expected, "crds/ holds files the types do not generate; run `make crds`");
}

#[test]
fn every_crd_has_status_printer_columns_short_names_and_descriptions() {
    for crd in crds::all() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        assert!(crd.spec.names.short_names.as_ref().is_some_and(|s| !s.is_empty()), "{name}: short name");
        let version = &crd.spec.versions[0];
        assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some(), "{name}: status");
        let columns = version.additional_printer_columns.as_ref().map_or(0, Vec::len);
        assert!(columns >= 3, "{name}: printer columns");
        let schema = serde_json::to_value(version.schema.as_ref().unwrap()).unwrap();
        let mut missing = Vec::new();
        undocumented(&schema["openAPIV3Schema"]["properties"]["spec"], "spec", &mut missing);
        assert!(missing.is_empty(), "{name}: fields without a description: {missing:?}");
    }
}

/// Collects the paths of spec properties whose schema has no description.
fn undocumented(schema: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
    if schema.get("description").is_none() {
        missing.push(path.to_owned());
    }
    if let Some(props) = schema.get("properties").and_then(|p| p.as_object()) {
        for (key, sub) in props {
            undocumented(sub, &format!("{path}.{key}"), missing);
        }
    }
    if let Some(items) = schema.get("items").filter(|i| i.get("properties").is_some()) {
        undocumented(items, &format!("{path}[]"), missing);
    }
}
