//! The desired state: what resolution produces, and why (docs/language.md §15.6).

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::FastMap;
use crate::ir::Origin;
use serde::{Deserialize, Serialize};

/// The version of the desired state's JSON (`aptc plan --format json|yaml`, the state a revision
/// records): raised when a field changes meaning or goes away. Version 1 (unmarked) repeated each
/// claim's labels at every instance it uses and carried every decision chain; version 2 lists
/// each claim once and instances refer to it by id (docs/formats.md).
pub const FORMAT_VERSION: u32 = 2;

/// Every instance of every resolved claim, and the outcome of every claim.
///
/// It serializes as docs/formats.md's plan format ([`FORMAT_VERSION`]): each claim once with its
/// labels at the claimed contract, instances naming their claims by id with the labels at that
/// use only where they differ (an index into a table of label sets), and no decision chains.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DesiredState {
    /// By instance key. Boxed: the B-tree's nodes hold pointers rather than ~350-byte instances
    /// (less memory in half-full nodes, less copying when they split), and an instance moves in
    /// from its claim's staged tree without being copied.
    pub instances: BTreeMap<String, Box<Instance>>,
    /// By claim id (`namespace.name`). Boxed for the same reason as `instances`: claims merge in
    /// claim order, not in key order, and the B-tree's partly full nodes cost ~170 bytes more
    /// per claim with the outcomes inline (docs/performance.md).
    pub claims: BTreeMap<String, Box<ClaimOutcome>>,
}

/// What an instance is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceKind {
    /// The instance of a service (its components hang below it).
    Service,
    Chart {
        chart: Arc<str>,
        repo: Option<Arc<str>>,
        version: Option<Arc<str>>,
        base_dir: Arc<str>,
    },
    Manifests {
        glob: Arc<str>,
        base_dir: Arc<str>,
        /// The manifest templates rendered for this instance, in sorted path order.
        files: Vec<RenderedFile>,
    },
    /// A `uses` component: an edge to the used contract's service instance.
    Uses {
        contract: Arc<str>,
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
///
/// The names it shares with thousands of other instances (its cluster, Kubernetes namespace,
/// contract, context, service, component, and its kind's chart or glob and directory) are
/// `Arc<str>`s the resolver makes once, so building an instance bumps reference counts instead of
/// allocating; they serialize as the plain strings.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Instance {
    pub key: String,
    /// Stable, unique, a valid Kubernetes name (the Helm release name of a chart).
    pub name: String,
    /// A short stable hash of the key.
    pub id: String,
    pub kind: InstanceKind,
    /// `system.name` of the cluster.
    pub cluster: Arc<str>,
    pub k8s_namespace: Arc<str>,
    /// `namespace.name` of the contract, the chosen context and the service.
    pub contract: Arc<str>,
    pub context: Arc<str>,
    pub service: Arc<str>,
    /// The component, or `root` for the service instance.
    pub component: Arc<str>,
    /// The context's allocation keys, shared by the instances of a service instance.
    pub allocation: Arc<[String]>,
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
    /// Why it was rejected or failed. Claims alike fail alike (on Aptomi's engine shape 100,000
    /// claims fail for ~5,600 distinct reasons), so equal reasons share one allocation.
    pub reason: Option<Arc<str>>,
    /// Where the deciding rule, criteria or expression is. Boxed: most failures (conflicts) have
    /// none, and inline it made an outcome 176 bytes, a size class of 192 (160 now).
    pub reason_origin: Option<Box<Origin>>,
    /// The service instance of the claimed contract.
    pub root: Option<String>,
    /// The labels the claim had at the claimed contract (depth 0), once it resolved: the map its
    /// uses at depth 0 share. The plan format writes it here once instead of at every instance;
    /// `explain`'s format has no such field.
    #[serde(skip)]
    pub labels: Option<Arc<BTreeMap<String, serde_json::Value>>>,
    /// The decision chain, if the resolution kept it ([`super::Chains`]); the plan format leaves
    /// it out (`aptc explain` shows it).
    pub decisions: Vec<Decision>,
    /// Facts worth knowing that did not fail the claim (a later claim conflicting with it).
    pub notes: Vec<ConflictNote>,
}

/// A later claim's conflict on an instance this claim fixed. Shown and serialized as one line:
/// "claim `CLAIM` conflicts on shared instance `KEY`: DIFFERENCES". On Aptomi's engine shape most
/// claims conflict, each leaving a note, and claims alike conflict alike: the part after the claim
/// is one shared allocation per distinct instance and differences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictNote {
    /// The conflicting claim.
    pub claim: String,
    /// The instance's key and the differences: "KEY`: DIFFERENCES".
    about: Arc<str>,
}

impl ConflictNote {
    /// The note of `claim`, whose conflict is `about` ([`ConflictNote::about`]).
    pub(crate) fn new(claim: String, about: Arc<str>) -> ConflictNote {
        ConflictNote { claim, about }
    }

    /// The note after the claim, "KEY`: DIFFERENCES": one allocation for all claims alike.
    pub fn conflict(&self) -> &Arc<str> {
        &self.about
    }

    /// What a claim's conflict on instance `key`, by `differences` (`` `value`: old vs new ``,
    /// …), says after the claim: "KEY`: DIFFERENCES".
    pub(crate) fn about(key: &str, differences: &str) -> String {
        super::exactly(&[key, "`: "], differences)
    }
}

impl std::fmt::Display for ConflictNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "claim `{}` conflicts on shared instance `{}", self.claim, self.about)
    }
}

impl Serialize for ConflictNote {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
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

impl Serialize for DesiredState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write(self, false, serializer)
    }
}

/// The desired state as people may see it (`aptc plan`), serialized as the plan format with every
/// secret of every instance's values and discovery written as `***`: redacted while it is written,
/// never on a copy (the same bytes as [`DesiredState::redact`] then serializing).
pub struct Redacted<'s>(pub &'s DesiredState);

impl Serialize for Redacted<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        write(self.0, true, serializer)
    }
}

impl DesiredState {
    /// The state to show people: see [`Redacted`].
    pub fn redacted(&self) -> Redacted<'_> {
        Redacted(self)
    }
}

fn write<S: serde::Serializer>(state: &DesiredState, redact: bool, serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct;
    let sets = LabelSets::of(state);
    let mut out = serializer.serialize_struct("DesiredState", 4)?;
    out.serialize_field("format_version", &FORMAT_VERSION)?;
    out.serialize_field("claims", &Claims(state))?;
    out.serialize_field("label_sets", &sets.table)?;
    out.serialize_field("instances", &Instances { state, sets: &sets, redact })?;
    out.end()
}

/// The claims, each written as it is reached.
struct Claims<'s>(&'s DesiredState);

impl Serialize for Claims<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.claims.iter().map(|(id, outcome)| (id.as_str(), ClaimView::of(outcome))))
    }
}

/// A JSON value written with every secret marker as `***` when `redact` (as
/// [`crate::secret::redact`] would make it), else as it is.
struct Json<'v> {
    value: &'v serde_json::Value,
    redact: bool,
}

impl Serialize for Json<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde_json::Value;
        if !self.redact {
            return self.value.serialize(serializer);
        }
        if crate::secret::SecretRef::from_json(self.value).is_some() {
            return serializer.serialize_str(crate::secret::REDACTED);
        }
        match self.value {
            Value::Array(items) => serializer.collect_seq(items.iter().map(|value| Json { value, redact: true })),
            Value::Object(entries) => {
                serializer.collect_map(entries.iter().map(|(key, value)| (key, Json { value, redact: true })))
            }
            other => other.serialize(serializer),
        }
    }
}

/// A claim as the plan format writes it: its outcome and labels, no decision chain.
#[derive(Serialize)]
struct ClaimView<'s> {
    claim: &'s str,
    origin: &'s Origin,
    status: Status,
    reason: Option<&'s str>,
    reason_origin: &'s Option<Box<Origin>>,
    root: &'s Option<String>,
    labels: Option<&'s BTreeMap<String, serde_json::Value>>,
    notes: &'s [ConflictNote],
}

impl<'s> ClaimView<'s> {
    fn of(outcome: &'s ClaimOutcome) -> ClaimView<'s> {
        ClaimView {
            claim: &outcome.claim,
            origin: &outcome.origin,
            status: outcome.status,
            reason: outcome.reason.as_deref(),
            reason_origin: &outcome.reason_origin,
            root: &outcome.root,
            labels: outcome.labels.as_deref(),
            notes: &outcome.notes,
        }
    }
}

/// The label sets of uses whose labels differ from their claim's at depth 0 (a `uses` deeper
/// down, after its contract's, context's and rules' label changes), each distinct map once: the
/// resolver shares equal maps (`Arc`), so they are told apart by address.
struct LabelSets<'s> {
    table: Vec<&'s BTreeMap<String, serde_json::Value>>,
    index: FastMap<*const BTreeMap<String, serde_json::Value>, usize>,
}

impl<'s> LabelSets<'s> {
    fn of(state: &'s DesiredState) -> LabelSets<'s> {
        let mut sets = LabelSets { table: Vec::new(), index: FastMap::default() };
        for instance in state.instances.values() {
            for used in &instance.claims {
                if differs(state, used) {
                    let table = &mut sets.table;
                    sets.index.entry(Arc::as_ptr(&used.labels)).or_insert_with(|| {
                        table.push(&*used.labels);
                        table.len() - 1
                    });
                }
            }
        }
        sets
    }

    /// The index of `used`'s labels in the table, if they differ from its claim's.
    fn of_use(&self, state: &DesiredState, used: &ClaimUse) -> Option<usize> {
        if differs(state, used) { self.index.get(&Arc::as_ptr(&used.labels)).copied() } else { None }
    }
}

/// Whether a use's labels differ from its claim's labels at depth 0.
fn differs(state: &DesiredState, used: &ClaimUse) -> bool {
    match state.claims.get(&used.claim).and_then(|c| c.labels.as_ref()) {
        Some(claim) => !Arc::ptr_eq(claim, &used.labels) && **claim != *used.labels,
        None => true,
    }
}

/// The instances, each written as it is reached (never a copy of the state).
struct Instances<'s> {
    state: &'s DesiredState,
    sets: &'s LabelSets<'s>,
    redact: bool,
}

impl Serialize for Instances<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.state.instances.len()))?;
        for (key, instance) in &self.state.instances {
            let claims: Vec<UseView> = instance
                .claims
                .iter()
                .map(|used| UseView {
                    claim: &used.claim,
                    depth: used.depth,
                    labels: self.sets.of_use(self.state, used),
                })
                .collect();
            map.serialize_entry(key, &InstanceView { instance, claims, redact: self.redact })?;
        }
        map.end()
    }
}

/// A claim's use of an instance as the plan format writes it.
#[derive(Serialize)]
struct UseView<'s> {
    claim: &'s str,
    depth: usize,
    /// An index into `label_sets`, only where the labels differ from the claim's.
    #[serde(skip_serializing_if = "Option::is_none")]
    labels: Option<usize>,
}

/// An instance as the plan format writes it: its fields, with its claims by id.
struct InstanceView<'s> {
    instance: &'s Instance,
    claims: Vec<UseView<'s>>,
    redact: bool,
}

impl Serialize for InstanceView<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        // Destructured whole, so a new field of `Instance` cannot be left out unnoticed.
        let Instance {
            key,
            name,
            id,
            kind,
            cluster,
            k8s_namespace,
            contract,
            context,
            service,
            component,
            allocation,
            values,
            discovery,
            edges,
            claims: _,
        } = self.instance;
        let mut out = serializer.serialize_struct("Instance", 15)?;
        out.serialize_field("key", key)?;
        out.serialize_field("name", name)?;
        out.serialize_field("id", id)?;
        out.serialize_field("kind", kind)?;
        out.serialize_field("cluster", cluster)?;
        out.serialize_field("k8s_namespace", k8s_namespace)?;
        out.serialize_field("contract", contract)?;
        out.serialize_field("context", context)?;
        out.serialize_field("service", service)?;
        out.serialize_field("component", component)?;
        out.serialize_field("allocation", allocation)?;
        out.serialize_field("values", &Json { value: values, redact: self.redact })?;
        out.serialize_field("discovery", &Json { value: discovery, redact: self.redact })?;
        out.serialize_field("edges", edges)?;
        out.serialize_field("claims", &self.claims)?;
        out.end()
    }
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

#[cfg(test)]
impl Instance {
    /// A service instance of key `key` (also its name and id) with these values and discovery,
    /// used by no claim, for the resolver's unit tests.
    pub(crate) fn service_for_tests(key: &str, values: serde_json::Value, discovery: serde_json::Value) -> Instance {
        Instance {
            key: key.into(),
            name: key.into(),
            id: key.into(),
            kind: InstanceKind::Service,
            cluster: "system.c".into(),
            k8s_namespace: "ns".into(),
            contract: "a.c".into(),
            context: "main".into(),
            service: "a.s".into(),
            component: "root".into(),
            allocation: Arc::from([]),
            values,
            discovery,
            edges: Vec::new(),
            claims: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 100,000-claim state holds an outcome per claim: past 160 bytes, the allocator's next
    /// size class is 192 (3 MiB more at 100,000 claims; docs/performance.md).
    #[test]
    fn an_outcome_fits_in_160_bytes() {
        assert!(std::mem::size_of::<ClaimOutcome>() <= 160, "{} bytes", std::mem::size_of::<ClaimOutcome>());
    }

    #[test]
    fn redacted_while_written_is_redacted_then_written() {
        let secret = serde_json::json!({ "$secret": { "env": "TOKEN" } });
        let values = serde_json::json!({
            "password": secret,
            "list": [1, secret, { "deep": secret, "kept": "text" }],
            "not_a_marker": { "$secret": { "env": "A" }, "other": 1 },
            "plain": "x",
        });
        let instance = Instance::service_for_tests("k", values.clone(), serde_json::json!({ "url": secret }));
        let mut state = DesiredState::default();
        state.instances.insert("k".into(), Box::new(instance));
        let streamed = serde_json::to_string_pretty(&state.redacted()).unwrap();
        let yaml = serde_saphyr::to_string(&state.redacted()).unwrap();
        state.redact();
        assert_eq!(streamed, serde_json::to_string_pretty(&state).unwrap());
        assert_eq!(yaml, serde_saphyr::to_string(&state).unwrap());
        assert!(!streamed.contains("TOKEN") && streamed.contains("\"A\""), "{streamed}");
    }
}
