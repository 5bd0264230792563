//! The Kubernetes calls every controller makes: server-side apply with the operator's field
//! manager, a get that treats "not found" as `None`, a status write that fails rather than
//! overwrite a change it did not see, and a watched cache of every object of a kind.

use std::{fmt::Debug, time::Duration};

use futures::StreamExt;
use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, reflector, watcher},
};
use mysimbdp_api::constants::FIELD_MANAGER;
use serde::{Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

/// Applies `object` server-side as the operator's field manager, taking over conflicting fields.
pub async fn apply<K>(api: &Api<K>, object: &K) -> Result<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned,
{
    let name = object.name_any();
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&name, &params, &Patch::Apply(object)).await.map_err(Error::kube("apply", K::kind(&()), &name))
}

/// Gets `name`, or `None` when it does not exist.
pub async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    api.get_opt(name).await.map_err(Error::kube("get", K::kind(&()), name))
}

/// Merges `status` into the status of `object`, on the condition that nobody changed the
/// object since it was read: `Ok(false)` when someone did (read it again and retry).
pub async fn patch_status_unchanged<K>(api: &Api<K>, object: &K, status: serde_json::Value) -> Result<bool>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned,
{
    let name = object.name_any();
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": object.meta().resource_version },
        "status": status,
    });
    match api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_conflict() => Ok(false),
        Err(e) => Err(Error::kube("update status of", K::kind(&()), &name)(e)),
    }
}

/// A cache of every object of a kind, kept current by a watch, ready once first listed.
pub async fn cache<K>(api: Api<K>) -> reflector::Store<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let stream = watcher(api, watcher::Config::default()).default_backoff().reflect(writer).applied_objects();
    tokio::spawn(stream.for_each(|_| std::future::ready(())));
    // A watch that cannot list keeps retrying with backoff; the caller waits for it.
    while reader.wait_until_ready().await.is_err() {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    reader
}
