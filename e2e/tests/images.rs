//! The two ways of building the images agree: every Dockerfile of the repository and the
//! registry-free `make images` (e2e/stack/images.sh) put the same binaries in the same image,
//! under the reference the Dockerfile's build line, the chart and the samples use, with the
//! same entrypoint and non-root user. Needs no stack: it reads the files and the script's plan.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    process::Command,
};

use mysimbdp_e2e::Stack;

/// One image as `images.sh plan` describes it.
#[derive(Debug)]
struct Planned {
    references: BTreeSet<String>,
    dockerfile: String,
    binaries: BTreeSet<String>,
    entrypoint: String,
    user: String,
}

fn plan() -> Vec<Planned> {
    let script = Stack::repo_dir().join("e2e/stack/images.sh");
    let output = Command::new("bash").arg(&script).arg("plan").output().expect("bash runs");
    assert!(output.status.success(), "{} plan failed: {}", script.display(), String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| {
            let fields: BTreeMap<&str, &str> = line
                .split('\t')
                .collect::<Vec<_>>()
                .chunks(2)
                .map(|kv| (kv[0], kv.get(1).copied().unwrap_or("")))
                .collect();
            let words = |key: &str| fields[key].split_whitespace().map(str::to_owned).collect::<BTreeSet<_>>();
            Planned {
                references: words("image"),
                dockerfile: fields["dockerfile"].to_owned(),
                binaries: words("binaries"),
                entrypoint: fields["entrypoint"].to_owned(),
                user: fields["user"].to_owned(),
            }
        })
        .collect()
}

/// What a Dockerfile builds: the binaries its final stage copies (those it installs from
/// `target/release/`), its entrypoint, its user and the `-t` reference of its build line.
#[derive(Debug, Default)]
struct Built {
    binaries: BTreeSet<String>,
    entrypoint: Vec<String>,
    user: String,
    tag: Option<String>,
}

fn read_dockerfile(path: &Path) -> Built {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut built = Built::default();
    for line in text.lines() {
        let line = line.trim();
        if line.contains("docker build") {
            let words: Vec<&str> = line.split_whitespace().collect();
            built.tag = words.windows(2).find(|w| w[0] == "-t").map(|w| w[1].to_owned());
        }
        if let Some(entry) = line.strip_prefix("ENTRYPOINT ") {
            built.entrypoint = serde_json::from_str(entry).expect("ENTRYPOINT in exec form");
        }
        if let Some(user) = line.strip_prefix("USER ") {
            built.user = user.trim().to_owned();
        }
        // Only the lines that install into the final stage's /out, not the cargo build line.
        if line.contains("install ") || line.starts_with("target/release/") {
            built
                .binaries
                .extend(line.split_whitespace().filter_map(|w| w.strip_prefix("target/release/")).map(str::to_owned));
        }
    }
    built
}

#[test]
fn make_images_copies_what_each_dockerfile_copies() {
    let repo = Stack::repo_dir();
    let plan = plan();
    let listed = Command::new("git").args(["ls-files"]).current_dir(&repo).output().expect("git runs");
    let dockerfiles: BTreeSet<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|p| Path::new(p).file_name().is_some_and(|n| n.to_string_lossy().to_lowercase().contains("dockerfile")))
        .map(str::to_owned)
        .collect();
    let planned: BTreeSet<String> = plan.iter().map(|p| p.dockerfile.clone()).collect();
    assert_eq!(planned, dockerfiles, "every Dockerfile needs its image in e2e/stack/images.sh, and only those");

    for image in &plan {
        let built = read_dockerfile(&repo.join(&image.dockerfile));
        assert_eq!(image.binaries, built.binaries, "binaries of {} and of make images", image.dockerfile);
        assert_eq!(vec![image.entrypoint.clone()], built.entrypoint, "entrypoint of {}", image.dockerfile);
        assert_eq!(image.user, built.user, "user of {}", image.dockerfile);
        let tag = built.tag.unwrap_or_else(|| panic!("{} names no `docker build -t` reference", image.dockerfile));
        assert!(
            image.references.contains(&tag),
            "{} builds {tag}; make images makes {:?}",
            image.dockerfile,
            image.references
        );
    }
}

#[test]
fn make_images_makes_every_image_the_chart_and_the_samples_name() {
    let repo = Stack::repo_dir();
    let references: BTreeSet<String> = plan().into_iter().flat_map(|p| p.references).collect();

    let chart = std::fs::read_to_string(repo.join("charts/mysimbdp/Chart.yaml")).expect("Chart.yaml");
    let app_version = chart
        .lines()
        .find_map(|l| l.strip_prefix("appVersion:"))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("appVersion");
    let values = std::fs::read_to_string(repo.join("charts/mysimbdp/values.yaml")).expect("values.yaml");
    let repositories: Vec<&str> =
        values.lines().filter_map(|l| l.trim().strip_prefix("repository:")).map(str::trim).collect();
    assert_eq!(repositories.len(), 2, "the chart names the operator's and the sidecar's repository");
    for repository in repositories {
        let reference = format!("{repository}:{app_version}");
        assert!(references.contains(&reference), "the chart's {reference} is not made by make images: {references:?}");
    }

    // Every image a sample tenant's app names (the deliberately invalid samples aside).
    let samples = repo.join("tenant-samples");
    let mut named = BTreeSet::new();
    for tenant in std::fs::read_dir(&samples).expect("tenant-samples").flatten() {
        if !tenant.path().is_dir() || tenant.file_name() == "invalid" {
            continue;
        }
        for file in std::fs::read_dir(tenant.path()).expect("a tenant's folder").flatten() {
            if file.path().extension().is_some_and(|e| e == "yaml") {
                let text = std::fs::read_to_string(file.path()).expect("a sample");
                named.extend(text.lines().filter_map(|l| l.trim().strip_prefix("image:")).map(|i| i.trim().to_owned()));
            }
        }
    }
    assert!(!named.is_empty(), "the samples name images");
    let missing: Vec<&String> = named.difference(&references).collect();
    assert!(missing.is_empty(), "images the samples name that make images does not make: {missing:?}");
}
