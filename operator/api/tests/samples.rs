//! Every sample in `tenant-samples/` is a valid resource, and every sample in
//! `tenant-samples/invalid/` is refused with the message its `# expect:` line names.

use std::path::{Path, PathBuf};

use mysimbdp_api::validate::{Resource, validate};

fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tenant-samples")
}

/// YAML files under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|x| x == "yaml") {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The messages a sample expects from the types: `# expect:` and `# expect-types:` lines.
fn expectations(text: &str) -> Vec<&str> {
    text.lines().filter_map(|l| l.strip_prefix("# expect: ").or_else(|| l.strip_prefix("# expect-types: "))).collect()
}

#[test]
fn valid_samples_parse_and_pass_the_schema_rules() {
    let files: Vec<_> =
        yaml_files(&samples_dir()).into_iter().filter(|p| !p.starts_with(samples_dir().join("invalid"))).collect();
    let (mut tenants, mut batch, mut stream) = (0, 0, 0);
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        match validate(&text) {
            Ok(Resource::Tenant(_)) => tenants += 1,
            Ok(Resource::BatchIngestApp(_)) => batch += 1,
            Ok(Resource::StreamIngestApp(_)) => stream += 1,
            Err(e) => panic!("{} is refused: {e}", path.display()),
        }
    }
    assert!(
        tenants >= 2 && batch >= 2 && stream >= 1,
        "samples: {tenants} tenants, {batch} batch, {stream} stream apps"
    );
}

#[test]
fn the_two_sample_agreements_differ_in_substance() {
    let read = |p: &str| match validate(&std::fs::read_to_string(samples_dir().join(p)).unwrap()).unwrap() {
        Resource::Tenant(t) => t.spec.agreement,
        other => panic!("{p} is not a tenant: {other:?}"),
    };
    let a = read("acme-air/tenant.yaml");
    let b = read("nimbus-weather/tenant.yaml");
    assert_ne!(a.files.formats, b.files.formats);
    assert_ne!(a.delivery, b.delivery);
    assert_ne!(a.retention.on_offboarding, b.retention.on_offboarding);
    assert!(a.files.max_file_size.value() > 10.0 * b.files.max_file_size.value());
}

#[test]
fn invalid_samples_are_refused_with_a_message_that_says_what_is_wrong() {
    let files = yaml_files(&samples_dir().join("invalid"));
    assert!(files.len() >= 10, "expected a folder of invalid samples, found {}", files.len());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = expectations(&text);
        assert!(!expected.is_empty(), "{} has no `# expect:` line", path.display());
        match validate(&text) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => {
                let message = e.to_string();
                for want in expected {
                    assert!(
                        message.contains(want),
                        "{}: message {message:?} does not contain {want:?}",
                        path.display()
                    );
                }
            }
        }
    }
}
