//! What applies a plan's actions to a target: the driver interface.
//!
//! A driver applies one action at a time (a create, update or delete of one unit) and may be
//! called from several threads at once for independent actions. The render driver
//! ([`crate::render`]) writes what would be applied into a directory; drivers for real clusters
//! (Helm releases and server-side apply through the Kubernetes API) implement the same trait.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::helm::HelmError;
use crate::k8s::K8sError;
use crate::manifest::ManifestError;
use crate::plan::{Action, Plan, Unit};
use crate::secrets::SecretError;

/// The name of the file that marks an instance directory as aptc's.
pub const INSTANCE_FILE: &str = "instance.json";

/// Applies actions to one target.
pub trait Driver: Sync {
    /// The target, for people and for the revision store (`render:/abs/dir`). A store's revisions
    /// all belong to one target.
    fn target(&self) -> String;

    /// What the target is, in a sentence: `rendered to DIR`.
    fn describe(&self) -> String;

    /// Checks, before anything is applied, that the driver can carry out `plan` (its tools are
    /// there, its target is usable). An error here stops the deploy before it starts.
    fn preflight(&self, plan: &Plan) -> Result<(), DriverError>;

    /// Whether an applied unit is still found on the target (a unit recorded as applied but gone
    /// is created again).
    fn is_present(&self, unit: &Unit) -> bool;

    /// Whether asking the target is cheap (a local directory), so that every plan checks that
    /// applied units are still there; a cluster is asked only with `--refresh`.
    fn is_local(&self) -> bool {
        false
    }

    /// Applies one action, as part of revision `revision`.
    fn apply(&self, revision: u64, action: &Action) -> Result<ActionResult, DriverError>;

    /// What the target holds for `unit` now, as name → content hash (`None`: the driver cannot
    /// tell, or the unit is not there). Recorded after applying; a later difference is drift
    /// ([`crate::drift`]).
    fn fingerprint(&self, _unit: &Unit) -> Option<BTreeMap<String, String>> {
        None
    }
}

/// What a successful action did, in a few words (`2 objects in DIR`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ActionResult {
    pub detail: String,
}

/// Why an action (or a preflight) failed, by the part that failed; the message is what the
/// revision records and people read.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// Helm is needed (chart instances) and missing or unusable.
    #[error("chart instances need helm: {0}")]
    NeedsHelm(#[source] HelmError),
    /// A Helm call failed (a release, `helm template`).
    #[error(transparent)]
    Helm(#[from] HelmError),
    /// The Kubernetes API refused or failed, or a cluster cannot be reached.
    #[error(transparent)]
    Kubernetes(#[from] K8sError),
    /// A unit's manifests, or what Helm rendered, cannot be read or stamped.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// A secret the unit refers to cannot be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    /// The kubeconfig of the unit's cluster (a Secret's, or the home cluster's) cannot be had.
    #[error(transparent)]
    Credentials(Box<crate::credentials::CredentialsError>),
    /// A file or directory of the target could not be made, written, moved or removed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A chart operation asked of a unit that is not a chart (a caller's mistake, reported).
    #[error("{0} is not a chart instance")]
    NotAChart(String),
    /// An instance name that cannot be a directory of the render target.
    #[error("`{0}` cannot be a directory name")]
    BadName(String),
    /// The target holds something aptc did not make where aptc would write (`writing`) or remove
    /// it: left alone.
    #[error(
        "{} {}is not aptc's rendering of this instance (no {INSTANCE_FILE} for {key}); {}",
        dir.display(),
        if *writing { "exists and " } else { "" },
        if *writing { "move it away" } else { "not removed" }
    )]
    NotOurs { dir: PathBuf, key: String, writing: bool },
    /// An error whose message held a secret, kept only as its scrubbed text (the original is
    /// dropped so the secret goes nowhere).
    #[error("{message}")]
    Scrubbed { message: String, transient: bool },
    /// The cluster stopped answering during the deploy (for longer than the watchdog waits): the
    /// Helm call running then was stopped, and nothing more is tried on that cluster.
    #[error("the cluster {cluster} became unreachable: {reason}; nothing more is applied there in this deploy")]
    ClusterLost { cluster: String, reason: String },
}

impl From<crate::credentials::CredentialsError> for DriverError {
    fn from(error: crate::credentials::CredentialsError) -> DriverError {
        DriverError::Credentials(Box::new(error))
    }
}

impl DriverError {
    /// Whether the same action may succeed if run again unchanged: Helm or the API failed for a
    /// moment (by the typed errors' own `is_transient`), the cluster did not answer, a file could
    /// not be written. A refusal, a missing chart or secret, a conflict with another operation,
    /// or a bug fail the same way until something changes.
    pub fn is_transient(&self) -> bool {
        match self {
            DriverError::Helm(error) => error.is_transient(),
            DriverError::Kubernetes(error) => error.is_transient(),
            DriverError::ClusterLost { .. } | DriverError::Io { .. } => true,
            DriverError::Scrubbed { transient, .. } => *transient,
            DriverError::Credentials(error) => error.is_transient(),
            DriverError::Secret(error) => error.transient,
            DriverError::NeedsHelm(_)
            | DriverError::Manifest(_)
            | DriverError::BadName(_)
            | DriverError::NotAChart(_)
            | DriverError::NotOurs { .. } => false,
        }
    }
}
