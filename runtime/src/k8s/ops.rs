//! One request at a time against a cluster: discovery (cached per group/version), reading,
//! server-side applying and deleting one object, each retried while the failure is transient, and
//! every failure turned into a [`K8sError`] naming the object and the cluster.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersion;
use kube::discovery::{ApiResource, Scope};
use serde_json::{Value, json};

use super::object::ObjectRef;
use super::{K8sError, LABEL_MANAGED};
use crate::retry::Backoff;

/// aptc's field manager on every server-side apply.
const FIELD_MANAGER: &str = "aptc";

/// The kinds of one group/version: kind → (resource, namespaced).
type Kinds = HashMap<String, (ApiResource, bool)>;

/// A client for one cluster, with its name (for errors), its retry policy and what discovery
/// found so far.
pub(crate) struct Cluster {
    pub client: Client,
    pub name: String,
    pub backoff: Backoff,
    discovery: Mutex<HashMap<String, Kinds>>,
}

/// An object located on the cluster: its reference with the namespace it lives in, and its API.
pub(crate) struct Located {
    pub object: ObjectRef,
    api: Api<DynamicObject>,
}

impl Cluster {
    pub fn new(client: Client, name: String, backoff: Backoff) -> Cluster {
        Cluster { client, name, backoff, discovery: Mutex::new(HashMap::new()) }
    }

    /// Forgets what discovery found (after CRDs are applied, new kinds may be served).
    pub fn forget_discovery(&self) {
        self.discovery.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Where `object` lives: its kind's resource from discovery, and for a namespaced kind its
    /// namespace (`default_namespace` when it names none). A cluster-scoped object has none.
    pub async fn locate(&self, object: &ObjectRef, default_namespace: &str) -> Result<Located, K8sError> {
        let (resource, namespaced) = self.resource(&object.api_version, &object.kind).await?;
        let mut object = object.clone();
        let api = if namespaced {
            let namespace = object.namespace.get_or_insert_with(|| default_namespace.to_string());
            Api::namespaced_with(self.client.clone(), namespace, &resource)
        } else {
            object.namespace = None;
            Api::all_with(self.client.clone(), &resource)
        };
        Ok(Located { object, api })
    }

    async fn resource(&self, api_version: &str, kind: &str) -> Result<(ApiResource, bool), K8sError> {
        let cached = |this: &Cluster| {
            let cache = this.discovery.lock().unwrap_or_else(|e| e.into_inner());
            cache.get(api_version).map(|kinds| kinds.get(kind).cloned())
        };
        let unknown = || K8sError::UnknownKind {
            cluster: self.name.clone(),
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        };
        if let Some(found) = cached(self) {
            return found.ok_or_else(unknown);
        }
        let gv: GroupVersion = api_version.parse().map_err(|_| unknown())?;
        tracing::debug!(cluster = %self.name, api_version, "discovering");
        let fetched = self
            .retry(&format!("discovering {api_version}"), || kube::discovery::pinned_group(&self.client, &gv))
            .await;
        let group = match fetched {
            Ok(group) => group,
            Err(kube::Error::Api(status)) if status.code == 404 => return Err(unknown()),
            Err(error) => {
                return Err(K8sError::Api {
                    action: "discover",
                    object: format!("apiVersion {api_version}"),
                    cluster: self.name.clone(),
                    reason: reason(&error),
                });
            }
        };
        let kinds: Kinds = group
            .versioned_resources(&gv.version)
            .into_iter()
            .map(|(resource, caps)| (resource.kind.clone(), (resource, caps.scope == Scope::Namespaced)))
            .collect();
        let found = kinds.get(kind).cloned();
        self.discovery.lock().unwrap_or_else(|e| e.into_inner()).insert(api_version.to_string(), kinds);
        found.ok_or_else(unknown)
    }

    /// The live object, if it exists.
    pub async fn get(&self, located: &Located) -> Result<Option<Value>, K8sError> {
        tracing::debug!(cluster = %self.name, object = %located.object, "reading");
        let name = located.object.name.as_str();
        let api = &located.api;
        let live = self.retry(&format!("reading {}", located.object), || api.get_opt(name)).await;
        let live = live.map_err(|e| self.error("read", &located.object, &e))?;
        live.map(serde_json::to_value).transpose().map_err(|e| K8sError::Api {
            action: "read",
            object: located.object.to_string(),
            cluster: self.name.clone(),
            reason: e.to_string(),
        })
    }

    /// Server-side applies `body` (the whole object) as field manager `aptc`, taking over fields
    /// other managers own (`force`): what the policy says wins.
    pub async fn apply(&self, located: &Located, body: &Value) -> Result<(), K8sError> {
        tracing::debug!(cluster = %self.name, object = %located.object, "server-side apply");
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(body);
        let (name, api, params, patch) = (located.object.name.as_str(), &located.api, &params, &patch);
        self.retry(&format!("applying {}", located.object), || api.patch(name, params, patch))
            .await
            .map(|_| ())
            .map_err(|e| self.error("apply", &located.object, &e))
    }

    /// Deletes the object (dependents in the background); `false` if it was gone already.
    pub async fn delete(&self, located: &Located) -> Result<bool, K8sError> {
        tracing::debug!(cluster = %self.name, object = %located.object, "deleting");
        let params = DeleteParams::background();
        let (name, api, params) = (located.object.name.as_str(), &located.api, &params);
        match self.retry(&format!("deleting {}", located.object), || api.delete(name, params)).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(false),
            Err(error) => Err(self.error("delete", &located.object, &error)),
        }
    }

    /// Deletes `object` wherever it lives; a kind the cluster no longer serves (its CRD is gone)
    /// has no objects left, so that is not an error.
    pub async fn delete_ref(&self, object: &ObjectRef, default_namespace: &str) -> Result<bool, K8sError> {
        match self.locate(object, default_namespace).await {
            Ok(located) => self.delete(&located).await,
            Err(K8sError::UnknownKind { .. }) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Creates namespace `name` if it is missing (labelled `aptc.dev/managed=true`); an existing
    /// namespace is left as it is.
    pub async fn ensure_namespace(&self, name: &str) -> Result<(), K8sError> {
        let object =
            ObjectRef { api_version: "v1".into(), kind: "Namespace".into(), namespace: None, name: name.into() };
        let api: Api<Namespace> = Api::all(self.client.clone());
        let found = self.retry(&format!("reading {object}"), || api.get_opt(name)).await;
        if found.map_err(|e| self.error("read", &object, &e))?.is_some() {
            return Ok(());
        }
        tracing::info!(cluster = %self.name, namespace = name, "creating namespace");
        let body = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": { "name": name, "labels": { LABEL_MANAGED: "true" } },
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let patch = Patch::Apply(&body);
        let (api, params, patch) = (&api, &params, &patch);
        self.retry(&format!("creating {object}"), || api.patch(name, params, patch))
            .await
            .map(|_| ())
            .map_err(|e| self.error("create", &object, &e))
    }

    /// The data of ConfigMap `name` in `namespace`, `None` if it does not exist (nor its
    /// namespace).
    pub async fn config_map(&self, object: &ObjectRef) -> Result<Option<ConfigMap>, K8sError> {
        let namespace = object.namespace.as_deref().unwrap_or_default();
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let name = object.name.as_str();
        self.retry(&format!("reading {object}"), || api.get_opt(name)).await.map_err(|e| self.error("read", object, &e))
    }

    async fn retry<T, F: Future<Output = kube::Result<T>>>(
        &self,
        what: &str,
        op: impl FnMut() -> F,
    ) -> kube::Result<T> {
        self.backoff.retry_async(what, op).await
    }

    fn error(&self, action: &'static str, object: &ObjectRef, error: &kube::Error) -> K8sError {
        K8sError::Api { action, object: object.to_string(), cluster: self.name.clone(), reason: reason(error) }
    }
}

/// Throttling, a server error that may pass, or no answer at all: worth another attempt. A refusal
/// (403, 404, 409, 422, …) never is.
impl crate::retry::Transient for kube::Error {
    fn is_transient(&self) -> bool {
        match self {
            kube::Error::Api(status) => matches!(status.code, 429 | 500 | 502 | 503 | 504),
            kube::Error::HyperError(_) | kube::Error::Service(_) => true,
            _ => false,
        }
    }
}

/// The API's own message and reason, or the error with its causes.
pub(crate) fn reason(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) if !status.message.is_empty() => {
            let why = if status.reason.is_empty() { String::new() } else { format!("{}, ", status.reason) };
            format!("{} ({why}HTTP {})", status.message, status.code)
        }
        other => chain(other),
    }
}

/// An error and its causes: `a: b: c`.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
