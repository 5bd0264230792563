//! The two Kubernetes calls every controller makes: server-side apply with the operator's
//! field manager, and a get that treats "not found" as `None`.

use std::fmt::Debug;

use kube::{
    Api, Resource, ResourceExt,
    api::{Patch, PatchParams},
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
