//! The staging store on a local (or mounted) filesystem: `<root>/<tenant>/<state>/<file>`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{Result, STATES, Staging, StagingError};

/// Staging areas under one root directory.
pub struct LocalStaging {
    root: PathBuf,
}

impl LocalStaging {
    /// Areas under `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory of a tenant's area.
    pub fn area(&self, tenant: &str) -> PathBuf {
        self.root.join(tenant)
    }
}

fn io(operation: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StagingError {
    let path = path.to_path_buf();
    move |source| StagingError::Io { operation, path, source }
}

#[async_trait]
impl Staging for LocalStaging {
    async fn ensure_area(&self, tenant: &str) -> Result<String> {
        let area = self.area(tenant);
        for state in STATES {
            let dir = area.join(state);
            tokio::fs::create_dir_all(&dir).await.map_err(io("create", &dir))?;
        }
        Ok(format!("file://{}/incoming/", area.display()))
    }

    async fn delete_area(&self, tenant: &str) -> Result<()> {
        let area = self.area(tenant);
        match tokio::fs::remove_dir_all(&area).await {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("delete", &area)(e)),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn areas_are_created_idempotently_and_deleted_with_their_files() {
        let root = std::env::temp_dir().join(format!("staging-test-{}", std::process::id()));
        let staging = LocalStaging::new(&root);
        let url = staging.ensure_area("acme-air").await.unwrap();
        assert_eq!(url, format!("file://{}/acme-air/incoming/", root.display()));
        std::fs::write(root.join("acme-air/incoming/a.csv"), "x").unwrap();
        staging.ensure_area("acme-air").await.unwrap();
        assert!(root.join("acme-air/incoming/a.csv").exists(), "a second ensure keeps files");
        for state in STATES {
            assert!(root.join("acme-air").join(state).is_dir(), "{state}");
        }
        staging.delete_area("acme-air").await.unwrap();
        assert!(!root.join("acme-air").exists());
        staging.delete_area("acme-air").await.unwrap();
        std::fs::remove_dir_all(root).unwrap();
    }
}
