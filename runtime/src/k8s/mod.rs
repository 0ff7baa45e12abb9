//! Server-side apply to a live cluster through the Kubernetes API (`kube`), for the manifests
//! units of a cluster driver.
//!
//! Each unit's objects are server-side applied as field manager `aptc` (forcing conflicts: the
//! policy wins), Namespaces first, then CRDs, then the rest in the given order; namespaces the
//! objects need are created when missing. A per-unit inventory ConfigMap
//! (`aptc-inventory-<id>` in the unit's namespace) lists what was applied, so
//! objects that leave the desired set are pruned and deleting a unit removes all it made.
//! Transient failures (throttling, 5xx, no answer) are retried with [`Backoff`]; refusals are
//! not. [`Applier::fingerprint`] hashes live objects for drift.
//!
//! The API is synchronous: the [`Applier`] owns a small tokio runtime and blocks on it, so the
//! plan executor's threads can call it at once.

mod apply;
mod fingerprint;
mod inventory;
mod object;
pub(crate) mod ops;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Client;
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use serde_json::Value;

use crate::connection::Connection;
use crate::plan::Unit;
use crate::retry::Backoff;
use ops::{Cluster, chain};

pub use inventory::InventoryError;
pub use object::ObjectError;

/// The label on namespaces aptc created because an object needed them; pruning never deletes
/// them (they are in no inventory).
pub const LABEL_MANAGED: &str = "aptc.dev/managed";

/// How long `connect` waits for the API server to answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Applies units to one cluster: a `kube` client, its own runtime, a discovery cache and a retry
/// policy. Safe to use from several threads at once.
pub struct Applier {
    runtime: tokio::runtime::Runtime,
    cluster: Cluster,
}

/// What an apply (or a delete) did: for the action's result line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApplySummary {
    /// Objects server-side applied.
    pub applied: usize,
    /// Objects deleted: those pruned from the unit, or all of them when the unit is deleted (not
    /// counting objects that were gone already).
    pub pruned: usize,
    /// `3 objects applied, 1 pruned`; `3 objects deleted`.
    pub detail: String,
}

/// Why a cluster operation failed; every message names the cluster, and the object and the
/// API's reason where there is one.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// The kubeconfig cannot be read, or has no such context, or its credentials are unusable.
    #[error("cannot use the kubeconfig of {connection}: {reason}")]
    Kubeconfig { connection: String, reason: String },
    /// The API server did not answer `GET /version` in time, or answered it with an error
    /// (connection refused, bad certificate, unauthorized, …).
    #[error("cannot connect to {connection} at {url}: {reason}")]
    Unreachable { connection: String, url: String, reason: String },
    /// The client's threads could not be started.
    #[error("cannot start the Kubernetes client: {0}")]
    Runtime(#[source] std::io::Error),
    /// A desired object is not a valid Kubernetes object (no kind, no name, …).
    #[error("unit {unit} on cluster {cluster}: {reason}")]
    InvalidObject { unit: String, cluster: String, reason: object::ObjectError },
    /// The cluster serves no such kind at that apiVersion.
    #[error(
        "cluster {cluster} does not serve kind {kind} of apiVersion {api_version} (a typo, or a CRD that is not installed)"
    )]
    UnknownKind { cluster: String, api_version: String, kind: String },
    /// The API refused or failed a request (after retries, if it was transient).
    #[error("cannot {action} {object} on cluster {cluster}: {reason}")]
    Api { action: &'static str, object: String, cluster: String, reason: String },
    /// The caller stopped waiting for the API server (it stopped answering); the reason.
    #[error("{0}")]
    Stopped(String),
    /// A unit's inventory ConfigMap exists but cannot be read as one.
    #[error("the inventory {object} on cluster {cluster} is damaged: {reason}")]
    Inventory { object: String, cluster: String, reason: inventory::InventoryError },
}

impl K8sError {
    /// Whether trying again may succeed: the API server did not answer (the API's own transient
    /// failures were already retried, and what remains is a refusal or a damaged object).
    pub fn is_transient(&self) -> bool {
        matches!(self, K8sError::Unreachable { .. } | K8sError::Runtime(_))
    }
}

impl Applier {
    /// Connects to the cluster `connection` names (its kubeconfig file and context) and checks
    /// that the API server answers within 5 seconds, so a wrong or unreachable cluster fails the
    /// deploy's preflight rather than its first action.
    pub fn connect(connection: &Connection) -> Result<Applier, K8sError> {
        let runtime = runtime()?;
        let path = connection.kubeconfig_path();
        let kubeconfig_error = |reason: String| K8sError::Kubeconfig { connection: connection.describe(), reason };
        let kubeconfig = Kubeconfig::read_from(&path).map_err(|e| kubeconfig_error(chain(&e)))?;
        let options = KubeConfigOptions { context: connection.context.clone(), ..KubeConfigOptions::default() };
        let client = runtime.block_on(async {
            let config =
                Config::from_custom_kubeconfig(kubeconfig, &options).await.map_err(|e| kubeconfig_error(chain(&e)))?;
            let url = config.cluster_url.to_string();
            let client = Client::try_from(config).map_err(|e| kubeconfig_error(chain(&e)))?;
            let unreachable =
                |reason: String| K8sError::Unreachable { connection: connection.describe(), url: url.clone(), reason };
            match tokio::time::timeout(CONNECT_TIMEOUT, client.apiserver_version()).await {
                Err(_) => Err(unreachable(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()))),
                Ok(Err(error)) => Err(unreachable(ops::reason(&error))),
                Ok(Ok(version)) => {
                    tracing::debug!(cluster = %connection.cluster, version = %version.git_version, "connected");
                    Ok(client)
                }
            }
        })?;
        Ok(Applier { runtime, cluster: Cluster::new(client, connection.cluster.clone(), Backoff::default()) })
    }

    /// An applier over any client, for cluster `cluster` (named in errors), retrying with
    /// `backoff`. The client is made by `make_client` inside the applier's runtime, because a
    /// `kube::Client` runs its request queue on the runtime it is created in (tests pass
    /// `|| kube::Client::new(service, "default")`).
    pub fn with_client(
        cluster: &str,
        make_client: impl FnOnce() -> Client,
        backoff: Backoff,
    ) -> Result<Applier, K8sError> {
        let runtime = runtime()?;
        let client = {
            let _entered = runtime.enter();
            make_client()
        };
        Ok(Applier { runtime, cluster: Cluster::new(client, cluster.to_string(), backoff) })
    }

    /// Server-side applies `objects` (already stamped with aptc's labels) for `unit` as part of
    /// revision `revision`, prunes the objects the unit no longer has, and records the inventory.
    pub fn apply(&self, unit: &Unit, revision: u64, objects: &[Value]) -> Result<ApplySummary, K8sError> {
        self.apply_until(unit, revision, objects, &|| None)
    }

    /// [`Applier::apply`], given up (with [`K8sError::Stopped`]) as soon as `stop` gives a
    /// reason (asked a few times a second): a request to a dead API server is not waited out.
    pub fn apply_until(
        &self,
        unit: &Unit,
        revision: u64,
        objects: &[Value],
        stop: &(dyn Fn() -> Option<String> + Sync),
    ) -> Result<ApplySummary, K8sError> {
        self.runtime.block_on(until(self.cluster.apply_unit(unit, revision, objects), stop))
    }

    /// Deletes everything the unit's inventory lists (last applied first), then the inventory.
    /// Objects already gone, or no inventory at all, are fine.
    pub fn delete(&self, unit: &Unit) -> Result<ApplySummary, K8sError> {
        self.delete_until(unit, &|| None)
    }

    /// [`Applier::delete`], given up as soon as `stop` gives a reason.
    pub fn delete_until(
        &self,
        unit: &Unit,
        stop: &(dyn Fn() -> Option<String> + Sync),
    ) -> Result<ApplySummary, K8sError> {
        self.runtime.block_on(until(self.cluster.delete_unit(unit), stop))
    }

    /// Whether the unit's inventory exists on the cluster: a unit recorded as applied but gone
    /// is created again.
    pub fn is_present(&self, unit: &Unit) -> Result<bool, K8sError> {
        self.runtime.block_on(self.cluster.inventory(unit)).map(|listed| listed.is_some())
    }

    /// The live drift fingerprint of the unit's desired `objects`: for each one that exists,
    /// `Kind/namespace/name` (`Kind/name` cluster-scoped) → `sha256:` of the live object projected
    /// onto the fields the desired object sets (server bookkeeping, status and the revision
    /// label left out). A deleted object has no entry; a hand edit of a field aptc sets changes
    /// its hash. Works for any objects (Helm release objects too): it reads no inventory.
    pub fn fingerprint(&self, unit: &Unit, objects: &[Value]) -> Result<BTreeMap<String, String>, K8sError> {
        self.fingerprint_with_conflicts(unit, objects).map(|(prints, _)| prints)
    }

    /// [`Applier::fingerprint`], and a line for each field aptc sets that a controller owns
    /// (left out of the fingerprint: aptc does not fight controllers, `crate::owners`).
    pub fn fingerprint_with_conflicts(
        &self,
        unit: &Unit,
        objects: &[Value],
    ) -> Result<(BTreeMap<String, String>, Vec<String>), K8sError> {
        self.runtime.block_on(self.cluster.fingerprint_objects(unit, objects))
    }

    /// Whether the API server answers `GET /version` within `within` (the watchdog of a running
    /// Helm call asks this).
    pub fn answers(&self, within: Duration) -> bool {
        let client = self.cluster.client.clone();
        self.runtime.block_on(async move {
            matches!(tokio::time::timeout(within, client.apiserver_version()).await, Ok(Ok(_)))
        })
    }

    /// Creates namespace `name` if it is missing (labelled `aptc.dev/managed=true`), for
    /// releases installed into a namespace nothing else creates.
    pub fn ensure_namespace(&self, name: &str) -> Result<(), K8sError> {
        self.runtime.block_on(self.cluster.ensure_namespace(name))
    }
}

/// `work`, unless `stop` gives a reason first (asked every 200 ms).
async fn until<T>(
    work: impl std::future::Future<Output = Result<T, K8sError>>,
    stop: &(dyn Fn() -> Option<String> + Sync),
) -> Result<T, K8sError> {
    let stopped = async {
        loop {
            if let Some(reason) = stop() {
                return reason;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        done = work => done,
        reason = stopped => Err(K8sError::Stopped(reason)),
    }
}

/// Two worker threads: requests are I/O-bound, and actions run in parallel on their own threads.
fn runtime() -> Result<tokio::runtime::Runtime, K8sError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("aptc-k8s")
        .enable_all()
        .build()
        .map_err(K8sError::Runtime)
}
