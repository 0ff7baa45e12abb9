//! The desired state: what resolution produces, and why (docs/language.md §15.6).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::ir::Origin;
use serde::{Deserialize, Serialize};

/// Every instance of every resolved claim, and the outcome of every claim.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DesiredState {
    /// By instance key.
    pub instances: BTreeMap<String, Instance>,
    /// By claim id (`namespace.name`).
    pub claims: BTreeMap<String, ClaimOutcome>,
}

/// What an instance is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceKind {
    /// The instance of a service (its components hang below it).
    Service,
    Chart {
        chart: String,
        repo: Option<String>,
        version: Option<String>,
        base_dir: String,
    },
    Manifests {
        glob: String,
        base_dir: String,
        /// The manifest templates rendered for this instance, in sorted path order.
        files: Vec<RenderedFile>,
    },
    /// A `uses` component: an edge to the used contract's service instance.
    Uses {
        contract: String,
    },
}

/// A manifest file as rendered for one instance (docs/language.md §5.2): what is applied, so a
/// revision records it and a rollback applies it again. A secret in it is a placeholder
/// ([`crate::secret::placeholder`]) until a driver reveals it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RenderedFile {
    /// The path relative to the directory of the declaring policy file, `/`-separated.
    pub path: String,
    pub text: String,
}

/// One component (or service) instance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Instance {
    pub key: String,
    /// Stable, unique, a valid Kubernetes name (the Helm release name of a chart).
    pub name: String,
    /// A short stable hash of the key.
    pub id: String,
    pub kind: InstanceKind,
    /// `system.name` of the cluster.
    pub cluster: String,
    pub k8s_namespace: String,
    /// `namespace.name` of the contract, the chosen context and the service.
    pub contract: String,
    pub context: String,
    pub service: String,
    /// The component, or `root` for the service instance.
    pub component: String,
    pub allocation: Vec<String>,
    pub values: serde_json::Value,
    pub discovery: serde_json::Value,
    /// Keys of the instances this one points to: a service instance to its components, a
    /// `uses` component to the used service instance, a component to its dependencies.
    pub edges: Vec<String>,
    /// The claims that need it, in resolution order.
    pub claims: Vec<ClaimUse>,
}

/// A claim's use of an instance.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClaimUse {
    pub claim: String,
    /// 0 for the claimed contract, +1 per `uses`.
    pub depth: usize,
    /// The labels the claim had there: one map shared by every instance of a service instance,
    /// and across claims by the merge when equal (it is serialized as the map).
    #[serde(serialize_with = "shared")]
    pub labels: Arc<BTreeMap<String, serde_json::Value>>,
}

fn shared<T: Serialize, S: serde::Serializer>(value: &Arc<T>, serializer: S) -> Result<S::Ok, S::Error> {
    (**value).serialize(serializer)
}

/// How a claim ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Resolved,
    /// A rule rejected it.
    Rejected,
    /// Something went wrong: no context, no placement, an expression, access, a conflict.
    Failed,
}

/// A claim's outcome, with the decisions that led to it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClaimOutcome {
    pub claim: String,
    pub origin: Origin,
    pub status: Status,
    /// Why it was rejected or failed.
    pub reason: Option<String>,
    /// Where the deciding rule, criteria or expression is.
    pub reason_origin: Option<Origin>,
    /// The service instance of the claimed contract.
    pub root: Option<String>,
    pub decisions: Vec<Decision>,
    /// Facts worth knowing that did not fail the claim (a later claim conflicting with it).
    pub notes: Vec<String>,
}

/// One step of the decision chain. Names and origins of the program are shared (`Arc`) by every
/// claim's chain; they serialize as the plain strings and objects.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Decision {
    EnterContract {
        #[serde(serialize_with = "shared_str")]
        contract: Arc<str>,
        depth: usize,
    },
    Context {
        #[serde(serialize_with = "shared_str")]
        contract: Arc<str>,
        #[serde(serialize_with = "shared_str")]
        context: Arc<str>,
        matched: bool,
        #[serde(serialize_with = "shared")]
        origin: Arc<Origin>,
    },
    Rule {
        #[serde(serialize_with = "shared_str")]
        rule: Arc<str>,
        fired: bool,
        effect: Vec<String>,
        #[serde(serialize_with = "shared")]
        origin: Arc<Origin>,
    },
    Placement {
        cluster: String,
        k8s_namespace: String,
    },
    Allocation {
        keys: Vec<String>,
    },
    Component {
        key: String,
        included: bool,
    },
}

fn shared_str<S: serde::Serializer>(value: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value)
}

impl DesiredState {
    /// Makes the state what people may see (`aptc plan`, `explain`): every secret of every
    /// instance becomes `***`, in place, so nothing else of a large state is copied.
    pub fn redact(&mut self) {
        for instance in self.instances.values_mut() {
            instance.values = crate::secret::redact(&instance.values);
            instance.discovery = crate::secret::redact(&instance.discovery);
        }
    }
}
