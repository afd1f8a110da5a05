//! Where the declared objects live: the apiserver, or a fake in the unit tests.

use std::future::Future;

use ::kube::api::{Api, DynamicObject, Patch, PatchParams};
use ::kube::Client;
use serde_json::Value;

use super::objects::Declared;

/// The field manager of every write (server-side apply); `kubectl get -o yaml
/// --show-managed-fields` shows which fields the agent owns.
pub const FIELD_MANAGER: &str = "cairn-agent";

/// What a store call fails with: the kube error, or the fake's.
pub type StoreError = Box<dyn std::error::Error + Send + Sync>;

/// Reads and writes declared objects by kind and name.
pub trait Store {
    /// The object as the server has it (JSON), or `None` if it does not exist.
    fn get(
        &self,
        object: &Declared,
    ) -> impl Future<Output = Result<Option<Value>, StoreError>> + Send;
    /// Server-side apply of the declared body, taking over the declared fields from any
    /// other manager (`force`): the declaration wins a conflict.
    fn apply(&self, object: &Declared) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The real store: the apiserver, through the agent's client.
#[derive(Clone)]
pub struct KubeStore {
    client: Client,
}

impl std::fmt::Debug for KubeStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeStore").finish_non_exhaustive()
    }
}

impl KubeStore {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    fn api(&self, object: &Declared) -> Api<DynamicObject> {
        let client = self.client.clone();
        match &object.namespace {
            Some(ns) => Api::namespaced_with(client, ns, &object.resource),
            None => Api::all_with(client, &object.resource),
        }
    }
}

impl Store for KubeStore {
    async fn get(&self, object: &Declared) -> Result<Option<Value>, StoreError> {
        match self.api(object).get_opt(&object.name).await? {
            Some(found) => Ok(Some(serde_json::to_value(found)?)),
            None => Ok(None),
        }
    }

    async fn apply(&self, object: &Declared) -> Result<(), StoreError> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api(object)
            .patch(&object.name, &params, &Patch::Apply(&object.body))
            .await?;
        Ok(())
    }
}
