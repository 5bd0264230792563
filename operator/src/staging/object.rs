//! [`Staging`] on the `object_store` crate: `LocalFileSystem` for `file://` URLs, `AmazonS3`
//! for `s3://` URLs when built with the `s3` feature.

use std::{path::PathBuf, sync::Arc};

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use k8s_openapi::jiff::Timestamp;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, local::LocalFileSystem, path::Path, signer::Signer};

use futures::StreamExt;
use object_store::buffered::BufWriter;
use tokio::io::AsyncWriteExt;

use super::{ByteStream, FileState, Location, Result, StagedFile, Staging, StagingError, is_partial_upload};

/// Staging areas in one object store.
pub struct ObjectStaging {
    store: Arc<dyn ObjectStore>,
    /// Signs links to single files at the endpoint apps reach, with the key prefix under which
    /// the areas live (an S3 store).
    signer: Option<(Arc<dyn Signer>, String)>,
    /// The URL of the store's root, without a trailing slash.
    root_url: String,
    /// The root directory when the store is the local filesystem.
    local_root: Option<PathBuf>,
}

impl ObjectStaging {
    /// Opens `file:///absolute/path` (created when missing) or, with the `s3` feature,
    /// `s3://bucket/prefix` (credentials, region and endpoint from the usual AWS environment
    /// variables). Links for apps are signed for `app_endpoint` when given (the address apps
    /// reach the store at, when it differs from the operator's), else for the store's own.
    pub fn open_for_apps(url: &str, app_endpoint: Option<&str>) -> Result<Self> {
        let trimmed = url.trim_end_matches('/');
        if trimmed.starts_with("s3://") {
            return Self::open_s3(trimmed, app_endpoint);
        }
        Self::open(url)
    }

    /// Opens a store as [`ObjectStaging::open_for_apps`] does, links signed for the store's own
    /// endpoint.
    pub fn open(url: &str) -> Result<Self> {
        let trimmed = url.trim_end_matches('/');
        if let Some(path) = trimmed.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(StagingError::Url { url: url.into(), reason: "use file:///absolute/path".into() });
            }
            std::fs::create_dir_all(path).map_err(|source| StagingError::Io {
                operation: "create",
                path: path.into(),
                source,
            })?;
            let store = LocalFileSystem::new_with_prefix(path)
                .map_err(|source| StagingError::Store { operation: "open", path: path.into(), source })?
                .with_automatic_cleanup(true);
            return Ok(Self {
                store: Arc::new(store),
                signer: None,
                root_url: trimmed.into(),
                local_root: Some(path.into()),
            });
        }
        if trimmed.starts_with("s3://") {
            return Self::open_s3(trimmed, None);
        }
        Err(StagingError::Url { url: url.into(), reason: "use file:///absolute/path or s3://bucket/prefix".into() })
    }

    #[cfg(feature = "s3")]
    fn open_s3(url: &str, app_endpoint: Option<&str>) -> Result<Self> {
        let (bucket_url, prefix) = match url["s3://".len()..].split_once('/') {
            Some((bucket, prefix)) => (format!("s3://{bucket}"), Some(prefix.trim_matches('/').to_owned())),
            None => (url.to_owned(), None),
        };
        let build = |endpoint: Option<&str>| {
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_url(&bucket_url);
            if let Some(endpoint) = endpoint {
                builder = builder.with_endpoint(endpoint).with_allow_http(endpoint.starts_with("http://"));
            }
            builder.build().map_err(|source| StagingError::Store { operation: "open", path: url.into(), source })
        };
        let s3 = build(None)?;
        let signer: Arc<dyn Signer> = match app_endpoint {
            Some(endpoint) => Arc::new(build(Some(endpoint))?),
            None => Arc::new(s3.clone()),
        };
        let key_prefix = prefix.clone().map(|p| format!("{p}/")).unwrap_or_default();
        let store: Arc<dyn ObjectStore> = match prefix {
            Some(prefix) => Arc::new(object_store::prefix::PrefixStore::new(s3, prefix)),
            None => Arc::new(s3),
        };
        Ok(Self { store, signer: Some((signer, key_prefix)), root_url: url.into(), local_root: None })
    }

    #[cfg(not(feature = "s3"))]
    fn open_s3(url: &str, _app_endpoint: Option<&str>) -> Result<Self> {
        Err(StagingError::Url {
            url: url.into(),
            reason: "this build has no S3 support; build the operator with the `s3` feature".into(),
        })
    }

    fn store_err(operation: &'static str, path: &str) -> impl FnOnce(object_store::Error) -> StagingError {
        let path = path.to_owned();
        move |source| StagingError::Store { operation, path, source }
    }
}

/// The entries of a local `incoming/` folder, each looked at without following it: regular
/// files as they are, anything else (a symbolic link, a directory, a FIFO, a socket, a device)
/// marked for refusal.
fn list_local(folder: &std::path::Path) -> Result<Vec<StagedFile>> {
    let io = |operation: &'static str| {
        let path = folder.display().to_string();
        move |source| StagingError::Io { operation, path, source }
    };
    let entries = match std::fs::read_dir(folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io("list")(e)),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io("list"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_partial_upload(&name) {
            continue;
        }
        // DirEntry::metadata does not follow a symbolic link.
        let meta = entry.metadata().map_err(io("look at an entry of"))?;
        let kind = meta.file_type();
        let not_regular = if kind.is_file() {
            None
        } else if kind.is_symlink() {
            Some("a symbolic link")
        } else if kind.is_dir() {
            Some("a directory")
        } else {
            use std::os::unix::fs::FileTypeExt;
            Some(if kind.is_fifo() {
                "a FIFO"
            } else if kind.is_socket() {
                "a socket"
            } else if kind.is_block_device() || kind.is_char_device() {
                "a device"
            } else {
                "not a regular file"
            })
        };
        let modified = meta.modified().ok().and_then(|m| Timestamp::try_from(m).ok()).unwrap_or_else(Timestamp::now);
        let size = if not_regular.is_some() { 0 } else { meta.len() };
        files.push(StagedFile { name, size, modified, not_regular });
    }
    files.sort_by(|a, b| (a.modified, &a.name).cmp(&(b.modified, &b.name)));
    Ok(files)
}

/// A local staged file's content, opened without following a link and only when it is a regular
/// file (it may have been swapped since it was listed).
async fn read_local(path: &std::path::Path) -> Result<Bytes> {
    use tokio::io::AsyncReadExt;
    let io = |operation: &'static str| {
        let shown = path.display().to_string();
        move |source| StagingError::Io { operation, path: shown, source }
    };
    let mut file = tokio::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .await
        .map_err(io("open"))?;
    if !file.metadata().await.map_err(io("look at"))?.is_file() {
        return Err(io("read")(std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file")));
    }
    let mut content = Vec::new();
    file.read_to_end(&mut content).await.map_err(io("read"))?;
    Ok(Bytes::from(content))
}

/// The time `object_store` reports, as the timestamp type the rest of the operator uses.
fn timestamp(time: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from_millisecond(time.timestamp_millis()).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[async_trait]
impl Staging for ObjectStaging {
    async fn ensure_area(&self, tenant: &str) -> Result<String> {
        // Object stores have no folders; on a filesystem, an empty incoming/ shows the tenant
        // where to drop files.
        if let Some(root) = &self.local_root {
            for state in FileState::ALL {
                let dir = root.join(tenant).join(state.dir());
                tokio::fs::create_dir_all(&dir).await.map_err(|source| StagingError::Io {
                    operation: "create",
                    path: dir.display().to_string(),
                    source,
                })?;
            }
        }
        Ok(format!("{}/{tenant}/incoming/", self.root_url))
    }

    async fn delete_area(&self, tenant: &str) -> Result<()> {
        let prefix = Path::from(tenant);
        let objects: Vec<_> =
            self.store.list(Some(&prefix)).try_collect().await.map_err(Self::store_err("list", tenant))?;
        for object in objects {
            match self.store.delete(&object.location).await {
                Err(object_store::Error::NotFound { .. }) | Ok(()) => {}
                Err(e) => return Err(Self::store_err("delete", object.location.as_ref())(e)),
            }
        }
        if let Some(root) = &self.local_root {
            let dir = root.join(tenant);
            match tokio::fs::remove_dir_all(&dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(StagingError::Io { operation: "delete", path: dir.display().to_string(), source: e });
                }
                _ => {}
            }
        }
        Ok(())
    }

    async fn list_incoming(&self, tenant: &str) -> Result<Vec<StagedFile>> {
        if let Some(root) = &self.local_root {
            return list_local(&root.join(tenant).join(FileState::Incoming.dir()));
        }
        let prefix = Path::from(format!("{tenant}/incoming"));
        let listed = self.store.list_with_delimiter(Some(&prefix)).await;
        let listing = match listed {
            Ok(listing) => listing,
            Err(object_store::Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(Self::store_err("list", prefix.as_ref())(e)),
        };
        let mut files: Vec<StagedFile> = listing
            .objects
            .into_iter()
            .filter_map(|o| {
                let name = o.location.filename()?.to_owned();
                (!is_partial_upload(&name)).then(|| StagedFile {
                    name,
                    size: o.size,
                    modified: timestamp(o.last_modified),
                    not_regular: None,
                })
            })
            .collect();
        files.sort_by(|a, b| (a.modified, &a.name).cmp(&(b.modified, &b.name)));
        Ok(files)
    }

    async fn upload(&self, tenant: &str, name: &str, content: Bytes) -> Result<Location> {
        let location = Location::incoming(tenant, name);
        let partial = Location::incoming(tenant, &format!(".{name}.uploading"));
        let path = Path::from(partial.path());
        self.store.put(&path, PutPayload::from(content)).await.map_err(Self::store_err("write", path.as_ref()))?;
        self.move_file(&partial, &location).await?;
        Ok(location)
    }

    async fn upload_stream(
        &self,
        tenant: &str,
        name: &str,
        mut content: ByteStream,
        max_bytes: u64,
    ) -> Result<(Location, u64)> {
        if let Some(reason) = super::name_problem(name) {
            return Err(StagingError::Refused { name: name.into(), reason });
        }
        let location = Location::incoming(tenant, name);
        let nonce: u64 = rand::random();
        let partial = Location::incoming(tenant, &format!(".{name}.{nonce:016x}.uploading"));
        let path = Path::from(partial.path());
        let mut writer = BufWriter::new(self.store.clone(), path.clone());
        let mut written = 0u64;
        let outcome: Result<()> = async {
            while let Some(chunk) = content.next().await {
                let chunk =
                    chunk.map_err(|source| StagingError::Io { operation: "receive", path: location.path(), source })?;
                written = written.saturating_add(chunk.len() as u64);
                if written > max_bytes {
                    return Err(StagingError::Refused {
                        name: name.into(),
                        reason: format!(
                            "it is larger than {max_bytes} bytes, the most one upload of this tenant may hold"
                        ),
                    });
                }
                writer.write_all(&chunk).await.map_err(|source| StagingError::Io {
                    operation: "write",
                    path: path.to_string(),
                    source,
                })?;
            }
            writer.shutdown().await.map_err(|source| StagingError::Io {
                operation: "finish",
                path: path.to_string(),
                source,
            })
        }
        .await;
        if let Err(error) = outcome {
            let _ = writer.abort().await;
            let _ = self.store.delete(&path).await;
            return Err(error);
        }
        self.move_file(&partial, &location).await?;
        Ok((location, written))
    }

    async fn read_stream(&self, location: &Location) -> Result<ByteStream> {
        let path = Path::from(location.path());
        let got = self.store.get(&path).await.map_err(Self::store_err("read", path.as_ref()))?;
        Ok(got.into_stream().map_err(std::io::Error::other).boxed())
    }

    async fn read(&self, location: &Location) -> Result<Bytes> {
        if let Some(root) = &self.local_root {
            return read_local(&root.join(location.path())).await;
        }
        let path = Path::from(location.path());
        let got = self.store.get(&path).await.map_err(Self::store_err("read", path.as_ref()))?;
        got.bytes().await.map_err(Self::store_err("read", path.as_ref()))
    }

    async fn move_file(&self, from: &Location, to: &Location) -> Result<()> {
        if let Some(root) = &self.local_root {
            // A rename moves the entry itself, whatever it is (a link, not its target).
            let (source, target) = (root.join(from.path()), root.join(to.path()));
            if let Some(folder) = target.parent() {
                std::fs::create_dir_all(folder).map_err(|source| StagingError::Io {
                    operation: "create",
                    path: folder.display().to_string(),
                    source,
                })?;
            }
            return std::fs::rename(&source, &target).map_err(|e| StagingError::Io {
                operation: "move",
                path: source.display().to_string(),
                source: e,
            });
        }
        let (source, target) = (Path::from(from.path()), Path::from(to.path()));
        self.store.rename(&source, &target).await.map_err(Self::store_err("move", source.as_ref()))
    }

    async fn write_reason(&self, beside: &Location, text: &str) -> Result<()> {
        let mut reason = beside.clone();
        reason.name = format!("{}.reason", beside.name);
        let path = Path::from(reason.path());
        self.store
            .put(&path, PutPayload::from(text.to_owned()))
            .await
            .map(drop)
            .map_err(Self::store_err("write", path.as_ref()))
    }

    async fn exists(&self, location: &Location) -> Result<bool> {
        let path = Path::from(location.path());
        match self.store.head(&path).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Self::store_err("look up", path.as_ref())(e)),
        }
    }

    async fn app_url(&self, location: &Location, valid_for: std::time::Duration) -> Result<String> {
        let Some((signer, prefix)) = &self.signer else { return Ok(self.url(location)) };
        let key = Path::from(format!("{prefix}{}", location.path()));
        let url = signer
            .signed_url(object_store::signer::Method::GET, &key, valid_for)
            .await
            .map_err(Self::store_err("sign a link to", key.as_ref()))?;
        Ok(url.to_string())
    }

    fn url(&self, location: &Location) -> String {
        format!("{}/{}", self.root_url, location.path())
    }

    async fn expire(&self, tenant: &str, state: FileState, cutoff: Timestamp) -> Result<u64> {
        let prefix = Path::from(format!("{tenant}/{}", state.dir()));
        let objects: Vec<_> =
            self.store.list(Some(&prefix)).try_collect().await.map_err(Self::store_err("list", prefix.as_ref()))?;
        let mut deleted = 0;
        for object in objects.into_iter().filter(|o| timestamp(o.last_modified) < cutoff) {
            self.store.delete(&object.location).await.map_err(Self::store_err("delete", object.location.as_ref()))?;
            deleted += 1;
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        std::env::temp_dir().join(format!("staging-test-{}-{:?}", std::process::id(), std::thread::current().id()))
    }

    #[tokio::test]
    async fn files_move_through_states_and_areas_are_deleted() {
        let root = root();
        let staging = ObjectStaging::open(&format!("file://{}", root.display())).unwrap();
        let url = staging.ensure_area("acme-air").await.unwrap();
        assert_eq!(url, format!("file://{}/acme-air/incoming/", root.display()));
        std::fs::write(root.join("acme-air/incoming/a.csv"), "x,y\n1,2\n").unwrap();
        std::fs::write(root.join("acme-air/incoming/b.csv.part"), "x").unwrap();

        let listed = staging.list_incoming("acme-air").await.unwrap();
        assert_eq!(listed.iter().map(|f| (f.name.as_str(), f.size)).collect::<Vec<_>>(), [("a.csv", 8)]);
        let uploaded = staging.upload("acme-air", "c.csv", Bytes::from("x\n1\n")).await.unwrap();
        assert_eq!(staging.read(&uploaded).await.unwrap(), Bytes::from("x\n1\n"));
        let names: Vec<String> = staging.list_incoming("acme-air").await.unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["a.csv", "c.csv"], "no partial upload is left behind");
        staging.move_file(&uploaded, &uploaded.moved(FileState::Rejected, "id0")).await.unwrap();

        let from = Location::incoming("acme-air", "a.csv");
        let to = from.moved(FileState::Rejected, "id1");
        staging.move_file(&from, &to).await.unwrap();
        staging.write_reason(&to, "too big").await.unwrap();
        assert!(!staging.exists(&from).await.unwrap());
        assert_eq!(staging.read(&to).await.unwrap(), Bytes::from("x,y\n1,2\n"));
        assert_eq!(std::fs::read_to_string(root.join("acme-air/rejected/id1/a.csv.reason")).unwrap(), "too big");
        assert_eq!(staging.url(&to), format!("file://{}/acme-air/rejected/id1/a.csv", root.display()));

        assert_eq!(staging.expire("acme-air", FileState::Rejected, Timestamp::UNIX_EPOCH).await.unwrap(), 0);
        let later = Timestamp::now() + std::time::Duration::from_secs(60);
        assert_eq!(staging.expire("acme-air", FileState::Rejected, later).await.unwrap(), 3);

        staging.delete_area("acme-air").await.unwrap();
        assert!(!root.join("acme-air").exists());
        staging.delete_area("acme-air").await.unwrap();
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn entries_that_are_not_regular_files_are_marked_never_read_and_moved_as_they_are() {
        let root = root().with_extension("special");
        let staging = ObjectStaging::open(&format!("file://{}", root.display())).unwrap();
        staging.ensure_area("acme-air").await.unwrap();
        let incoming = root.join("acme-air/incoming");
        let secret = root.join("host-secret");
        std::fs::write(&secret, "not the tenant's").unwrap();
        std::os::unix::fs::symlink(&secret, incoming.join("link.csv")).unwrap();
        std::os::unix::fs::symlink("/nonexistent", incoming.join("dangling.csv")).unwrap();
        std::fs::create_dir(incoming.join("folder.csv")).unwrap();
        nix::unistd::mkfifo(&incoming.join("fifo.csv"), nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)
            .unwrap();
        std::fs::write(incoming.join("plain.csv"), "a\n").unwrap();

        let mut listed: Vec<(String, Option<&str>)> =
            staging.list_incoming("acme-air").await.unwrap().into_iter().map(|f| (f.name, f.not_regular)).collect();
        listed.sort();
        assert_eq!(
            listed,
            [
                ("dangling.csv".to_owned(), Some("a symbolic link")),
                ("fifo.csv".to_owned(), Some("a FIFO")),
                ("folder.csv".to_owned(), Some("a directory")),
                ("link.csv".to_owned(), Some("a symbolic link")),
                ("plain.csv".to_owned(), None),
            ]
        );
        // Reading a link or a FIFO fails at once (no follow, no block).
        for name in ["link.csv", "fifo.csv", "folder.csv"] {
            assert!(staging.read(&Location::incoming("acme-air", name)).await.is_err(), "{name} was read");
        }
        // Moving the link moves the link, not what it points at.
        let from = Location::incoming("acme-air", "link.csv");
        let to = from.moved(FileState::Rejected, "id1");
        staging.move_file(&from, &to).await.unwrap();
        assert!(std::fs::symlink_metadata(root.join(to.path())).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "not the tenant's");
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn unsupported_urls_say_what_to_write() {
        let err = ObjectStaging::open("ftp://x").err().unwrap().to_string();
        assert!(err.contains("file:///absolute/path"), "{err}");
        assert!(ObjectStaging::open("file://relative").is_err());
    }
}
