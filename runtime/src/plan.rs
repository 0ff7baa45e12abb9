//! Planning a deploy: the deployable units of a desired state, and the actions (create, update,
//! delete) that take what is applied now to what is desired, ordered by dependencies.
//!
//! A *unit* is one chart or manifests instance: what a driver applies. Service and `uses`
//! instances deploy nothing themselves; they only carry dependencies, so a unit depends on the
//! nearest units reachable through them ([`units`]).
//!
//! The plan ([`plan`]) lists creates and updates first, dependencies before their dependents, then
//! deletes, dependents before their dependencies. Each action names the earlier actions it must
//! wait for (`after`), so independent actions can run in parallel ([`crate::apply`]).
//!
//! A deploy never removes what a *fault* of the policy made undesired: an instance that only
//! claims which now fail (an evaluation error, a conflict, no placement) need is *kept* as the last
//! revision applied it, and the plan says so ([`Kept`]). Only a *decision* removes (a claim
//! removed, rejected by a rule, refused by access, or resolving elsewhere), and each delete names
//! it ([`ClaimEnds`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::secrets::Secrets;
use crate::source::{DigestCache, Source, rendered_digest};
use aptc_core::access::Access;
use aptc_core::ir::{Consumer, Program};
use aptc_core::resolve::{Decision, DesiredState, Instance, InstanceKind, RenderedFile, Status};
use aptc_core::secret::SecretRef;

/// One deployable instance (chart or manifests), with what a driver needs to apply it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Unit {
    /// The instance key (docs/language.md §15.3).
    pub key: String,
    /// The Kubernetes name (the Helm release name of a chart).
    pub name: String,
    /// A short stable hash of the key.
    pub id: String,
    pub source: Source,
    /// `system.NAME` of the cluster.
    pub cluster: String,
    pub k8s_namespace: String,
    /// The policy namespace that owns the service (the team's namespace).
    pub namespace: String,
    pub service: String,
    pub contract: String,
    pub context: String,
    pub component: String,
    /// The claims that need it, in resolution order.
    pub claims: Vec<String>,
    pub values: serde_json::Value,
    pub discovery: serde_json::Value,
    /// Keys of the units it needs in place first.
    pub depends_on: Vec<String>,
    /// A digest of what it deploys: its rendered manifests, or the local files of its chart (see
    /// [`Source::content_digest`]); `None` for a remote chart.
    pub content: Option<String>,
    /// A manifests unit's rendered files: exactly what is applied, so that a revision records it
    /// and a rollback applies it again (empty for a chart, and in stores from before templates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<RenderedFile>,
    /// A digest of the secrets its values refer to ([`Secrets::digest`]), so that a rotated
    /// secret is a change; `None` without secrets (and in stores from before secrets).
    #[serde(default)]
    pub secrets: Option<String>,
}

impl Unit {
    /// A cluster's name for people and paths (`local`, not `system.local`).
    pub fn cluster_name(&self) -> &str {
        self.cluster.strip_prefix("system.").unwrap_or(&self.cluster)
    }

    /// `cluster/k8s-namespace`, for people.
    pub fn place(&self) -> String {
        format!("{}/{}", self.cluster_name(), self.k8s_namespace)
    }

    /// What differs between what is applied (`self`) and what is desired, in a few words; empty
    /// when nothing that is deployed differs. The directory the policy was read from, and the
    /// dependency list (order only), do not count.
    pub fn changes_to(&self, desired: &Unit) -> Vec<String> {
        let mut changes = Vec::new();
        if self.source.without_base_dir() != desired.source.without_base_dir() {
            changes.push(format!("source: {} → {}", self.source.describe(), desired.source.describe()));
        } else if self.content != desired.content {
            changes.push(match desired.source {
                Source::Chart { .. } => "chart files changed".to_string(),
                Source::Manifests { .. } => "manifests changed".to_string(),
            });
        }
        if (&self.name, &self.cluster, &self.k8s_namespace) != (&desired.name, &desired.cluster, &desired.k8s_namespace)
        {
            changes.push("placement".to_string());
        }
        let mut paths = Vec::new();
        changed_paths("values", &self.values, &desired.values, &mut paths);
        changed_paths("discovery", &self.discovery, &desired.discovery, &mut paths);
        changes.extend(paths);
        if self.secrets != desired.secrets {
            changes.push("secrets changed".to_string());
        }
        if self.claims != desired.claims {
            changes.push("claims".to_string());
        }
        let owners = |u: &Unit| (u.namespace.clone(), u.service.clone(), u.contract.clone(), u.context.clone());
        if owners(self) != owners(desired) || self.component != desired.component {
            changes.push("service".to_string());
        }
        changes
    }
}

/// Leaf paths where two JSON values differ (`values.a.b`); a secret is a leaf.
fn changed_paths(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y))
            if SecretRef::from_json(a).is_none() && SecretRef::from_json(b).is_none() =>
        {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            let null = serde_json::Value::Null;
            for key in keys {
                changed_paths(&format!("{path}.{key}"), x.get(key).unwrap_or(&null), y.get(key).unwrap_or(&null), out);
            }
        }
        _ if a != b => out.push(path.to_string()),
        _ => {}
    }
}

/// The deployable units of a desired state, by key, with their dependencies and the digests of
/// their local files (read from disk here).
pub fn units(state: &DesiredState, secrets: &Secrets) -> BTreeMap<String, Unit> {
    let mut digests = DigestCache::default();
    state
        .instances
        .values()
        .filter_map(|instance| unit_of(state, instance, &mut digests, secrets))
        .map(|unit| (unit.key.clone(), unit))
        .collect()
}

/// The unit of one instance of `state` (`None`: no such instance, or it deploys nothing), as
/// [`units`] makes it, for a caller that wants one (the dashboard rendering an instance).
pub fn unit(state: &DesiredState, key: &str, secrets: &Secrets) -> Option<Unit> {
    unit_of(state, state.instances.get(key)?, &mut DigestCache::default(), secrets)
}

fn unit_of(state: &DesiredState, instance: &Instance, digests: &mut DigestCache, secrets: &Secrets) -> Option<Unit> {
    let source = match &instance.kind {
        InstanceKind::Chart { chart, repo, version, base_dir } => Source::Chart {
            chart: chart.to_string(),
            repo: repo.as_deref().map(str::to_string),
            version: version.as_deref().map(str::to_string),
            base_dir: base_dir.to_string(),
        },
        InstanceKind::Manifests { glob, base_dir, .. } => {
            Source::Manifests { glob: glob.to_string(), base_dir: base_dir.to_string() }
        }
        InstanceKind::Service | InstanceKind::Uses { .. } => return None,
    };
    let files = match &instance.kind {
        InstanceKind::Manifests { files, .. } => files.clone(),
        _ => Vec::new(),
    };
    let content = content(&source, &files, digests);
    let secrets = secrets.digest(&instance.values, source.base_dir());
    Some(Unit {
        key: instance.key.clone(),
        name: instance.name.clone(),
        id: instance.id.clone(),
        source,
        cluster: instance.cluster.to_string(),
        k8s_namespace: instance.k8s_namespace.to_string(),
        namespace: instance.service.split('.').next().unwrap_or_default().to_string(),
        service: instance.service.to_string(),
        contract: instance.contract.to_string(),
        context: instance.context.to_string(),
        component: instance.component.to_string(),
        claims: instance.claims.iter().map(|c| c.claim.clone()).collect(),
        values: instance.values.clone(),
        discovery: instance.discovery.clone(),
        depends_on: unit_dependencies(state, &instance.key),
        content,
        files,
        secrets,
    })
}

/// The digest of what a unit deploys: its rendered manifests, or its chart's local files.
fn content(source: &Source, files: &[RenderedFile], digests: &mut DigestCache) -> Option<String> {
    match source {
        Source::Manifests { .. } => Some(rendered_digest(files)),
        Source::Chart { .. } => digests.digest(source),
    }
}

/// The units `key` needs: the nearest chart or manifests instances reachable through its edges,
/// passing through service and `uses` instances (which deploy nothing).
fn unit_dependencies(state: &DesiredState, key: &str) -> Vec<String> {
    let deployable = |k: &str| {
        state
            .instances
            .get(k)
            .is_some_and(|i| matches!(i.kind, InstanceKind::Chart { .. } | InstanceKind::Manifests { .. }))
    };
    let mut found = BTreeSet::new();
    let mut seen = BTreeSet::from([key.to_string()]);
    let mut stack: Vec<&str> =
        state.instances.get(key).map(|i| i.edges.iter().map(String::as_str).collect()).unwrap_or_default();
    while let Some(next) = stack.pop() {
        if !seen.insert(next.to_string()) {
            continue;
        }
        if deployable(next) {
            found.insert(next.to_string());
        } else if let Some(instance) = state.instances.get(next) {
            stack.extend(instance.edges.iter().map(String::as_str));
        }
    }
    found.into_iter().collect()
}

/// Recomputes the content and secrets digests of units taken from a stored revision (for a
/// rollback: the chart files on disk and the secrets now are what will be deployed; manifests
/// are the rendered files the revision recorded).
pub fn refresh_digests(units: &mut BTreeMap<String, Unit>, secrets: &Secrets) {
    let mut digests = DigestCache::default();
    for unit in units.values_mut() {
        unit.content = content(&unit.source, &unit.files, &mut digests);
        unit.secrets = secrets.digest(&unit.values, unit.source.base_dir());
    }
}

/// Every kind of line a plan or a revision shows, in text and in JSON: the three actions a driver
/// carries out, and the two ways an instance is left as it is. Defined once so that the words and
/// signs are the same in every output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Create,
    Update,
    Delete,
    /// Applied as desired.
    Unchanged,
    /// Left as the last revision applied it because the claims that need it failed.
    Kept,
}

impl Kind {
    pub fn verb(self) -> &'static str {
        match self {
            Kind::Create => "create",
            Kind::Update => "update",
            Kind::Delete => "delete",
            Kind::Unchanged => "unchanged",
            Kind::Kept => "kept",
        }
    }

    pub fn past(self) -> &'static str {
        match self {
            Kind::Create => "created",
            Kind::Update => "updated",
            Kind::Delete => "deleted",
            Kind::Unchanged => "unchanged",
            Kind::Kept => "kept",
        }
    }

    /// The mark at the start of a plan line.
    pub fn sign(self) -> char {
        match self {
            Kind::Create => '+',
            Kind::Update => '~',
            Kind::Delete => '-',
            Kind::Unchanged => ' ',
            Kind::Kept => '=',
        }
    }
}

/// What an action does to its unit: the [`Kind`]s a driver carries out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    pub fn kind(self) -> Kind {
        match self {
            Op::Create => Kind::Create,
            Op::Update => Kind::Update,
            Op::Delete => Kind::Delete,
        }
    }

    pub fn verb(self) -> &'static str {
        self.kind().verb()
    }

    pub fn past(self) -> &'static str {
        self.kind().past()
    }
}

/// How a claim of the policy being deployed ended, as far as removing its instances goes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "end", content = "reason", rename_all = "snake_case")]
pub enum ClaimEnd {
    Resolved,
    /// A rule rejected it: a decision, its instances go.
    Rejected(String),
    /// Its consumer may not consume a contract it enters, or no longer exists: a decision, its
    /// instances go.
    Refused(String),
    /// A fault of the policy (an evaluation error, a conflict, no placement, …): its instances are
    /// kept as they are until it is fixed or the claim removed.
    Failed(String),
}

/// The [`ClaimEnd`] of every claim of a policy, by claim id; a claim absent was removed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ClaimEnds(pub BTreeMap<String, ClaimEnd>);

impl ClaimEnds {
    /// The ends of `state`'s claims; `program` (what was resolved) tells access refusals, which
    /// the resolver reports as failures, from faults.
    pub fn of(program: &Program, state: &DesiredState) -> ClaimEnds {
        let access = Access::new(program);
        let mut ends = BTreeMap::new();
        for (id, outcome) in &state.claims {
            let reason = outcome.reason.as_deref().unwrap_or_default().to_string();
            let end = match outcome.status {
                Status::Resolved => ClaimEnd::Resolved,
                Status::Rejected => ClaimEnd::Rejected(reason),
                Status::Failed if refused(program, &access, id, &outcome.decisions) => ClaimEnd::Refused(reason),
                Status::Failed => ClaimEnd::Failed(reason),
            };
            ends.insert(id.clone(), end);
        }
        ClaimEnds(ends)
    }

    /// The failed claims with their reasons.
    pub fn failed(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter().filter_map(|(id, end)| match end {
            ClaimEnd::Failed(reason) => Some((id, reason)),
            _ => None,
        })
    }

    /// Why `claim`'s instances are no longer desired, in a few words.
    fn why_gone(&self, claim: &str) -> String {
        match self.0.get(claim) {
            None => format!("claim {claim} removed"),
            Some(ClaimEnd::Resolved) => {
                format!("claim {claim} now resolves to other instances (context, placement or allocation changed)")
            }
            Some(ClaimEnd::Rejected(reason)) => format!("claim {claim} rejected: {reason}"),
            Some(ClaimEnd::Refused(reason)) => format!("claim {claim} refused: {reason}"),
            Some(ClaimEnd::Failed(reason)) => format!("claim failed: {claim}: {reason}"),
        }
    }
}

/// Whether a failed claim failed on access: its consumer is gone, or may not consume in the
/// namespace of the last contract it entered.
fn refused(program: &Program, access: &Access, id: &str, decisions: &[Decision]) -> bool {
    let Some(claim) = program.claims.iter().find(|c| c.id() == id) else { return false };
    let subject = match &claim.consumer {
        Consumer::User(name) => access.user(name),
        Consumer::Team(name) => access.team(name),
    };
    let Some(subject) = subject else { return true };
    let entered = decisions.iter().rev().find_map(|d| match d {
        Decision::EnterContract { contract, .. } => Some(contract),
        _ => None,
    });
    entered
        .and_then(|c| program.contracts.get(&**c))
        .is_some_and(|contract| !access.may_consume(&subject, &contract.namespace))
}

/// An applied unit left as it is because claims that need it failed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Kept {
    /// As the last revision applied it.
    pub unit: Unit,
    /// `claim failed: CLAIM: reason`, for each failed claim of the unit.
    pub why: String,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub op: Op,
    /// The desired unit (for a delete: the applied one).
    pub unit: Unit,
    /// Why: `new`, the changed fields, `missing from the target`; for a delete, the decision that
    /// removed it (`claim X removed`, …).
    pub why: String,
    /// Indices of earlier actions that must succeed before this one runs.
    pub after: Vec<usize>,
}

/// The actions that take what is applied to what is desired.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Keys of the desired units already applied as desired.
    pub unchanged: Vec<String>,
    /// Applied units no longer desired only because their claims failed: not deleted.
    #[serde(default)]
    pub kept: Vec<Kept>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// How many actions of `op`.
    pub fn count(&self, op: Op) -> usize {
        self.actions.iter().filter(|a| a.op == op).count()
    }
}

/// The plan from `applied` (what the target holds, by key) to `desired`. `present` says whether
/// an applied unit is still found on the target; one that is not is created again. `claims` says
/// how the policy's claims ended: an applied unit no longer desired that a failed claim needs is
/// kept, and each delete names its decision; `None` (a rollback, whose desired units are a
/// revision's) deletes what is not desired.
pub fn plan(
    applied: &BTreeMap<String, Unit>,
    desired: &BTreeMap<String, Unit>,
    claims: Option<&ClaimEnds>,
    present: &dyn Fn(&Unit) -> bool,
) -> Plan {
    let mut changes: BTreeMap<&str, (Op, String)> = BTreeMap::new();
    let mut unchanged = Vec::new();
    for (key, unit) in desired {
        match applied.get(key) {
            None => {
                changes.insert(key, (Op::Create, "new".to_string()));
            }
            Some(before) => {
                let diff = before.changes_to(unit);
                if !diff.is_empty() {
                    changes.insert(key, (Op::Update, diff.join(", ")));
                } else if !present(before) {
                    changes.insert(key, (Op::Create, "missing from the target".to_string()));
                } else {
                    unchanged.push(key.clone());
                }
            }
        }
    }
    let mut actions: Vec<Action> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    // Creates and updates: dependencies first. A unit waits for the nearest acting units among its
    // dependencies, looking through unchanged ones.
    for key in topological(desired) {
        let Some((op, why)) = changes.get(key.as_str()) else { continue };
        let after = nearest_acting(&key, desired, &|k| index.get(k).copied(), &|u| &u.depends_on);
        index.insert(key.clone(), actions.len());
        actions.push(Action { op: *op, unit: desired[&key].clone(), why: why.clone(), after });
    }
    // Kept: no longer desired, but a failed claim needs it.
    let mut kept = Vec::new();
    let mut removed: BTreeMap<&String, String> = BTreeMap::new();
    for (key, unit) in applied.iter().filter(|(k, _)| !desired.contains_key(*k)) {
        let Some(claims) = claims else {
            removed.insert(key, "not in the desired state".to_string());
            continue;
        };
        let failed: Vec<String> = unit
            .claims
            .iter()
            .filter(|c| matches!(claims.0.get(*c), Some(ClaimEnd::Failed(_))))
            .map(|c| claims.why_gone(c))
            .collect();
        if failed.is_empty() {
            let why: Vec<String> = unit.claims.iter().map(|c| claims.why_gone(c)).collect();
            removed.insert(key, if why.is_empty() { "no claim needs it".to_string() } else { why.join("; ") });
        } else {
            kept.push(Kept { unit: unit.clone(), why: failed.join("; ") });
        }
    }
    // Deletes: dependents first, in the order of the applied graph reversed.
    let mut dependents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for unit in applied.values() {
        for dependency in &unit.depends_on {
            dependents.entry(dependency.clone()).or_default().push(unit.key.clone());
        }
    }
    let mut deletes: BTreeMap<String, usize> = BTreeMap::new();
    let mut order = topological(applied);
    order.reverse();
    for key in order {
        let Some(why) = removed.get(&key) else { continue };
        let after = dependents
            .get(&key)
            .map(|ds| {
                let mut after: Vec<usize> = ds.iter().filter_map(|d| deletes.get(d).copied()).collect();
                after.sort_unstable();
                after
            })
            .unwrap_or_default();
        deletes.insert(key.clone(), actions.len());
        actions.push(Action { op: Op::Delete, unit: applied[&key].clone(), why: why.clone(), after });
    }
    Plan { actions, unchanged, kept }
}

/// The indices of the nearest acting units among `key`'s dependencies, looking through units
/// without an action.
fn nearest_acting(
    key: &str,
    units: &BTreeMap<String, Unit>,
    acting: &dyn Fn(&str) -> Option<usize>,
    edges: &dyn Fn(&Unit) -> &Vec<String>,
) -> Vec<usize> {
    let mut found = BTreeSet::new();
    let mut seen = BTreeSet::from([key.to_string()]);
    let mut stack: Vec<String> = units.get(key).map(|u| edges(u).clone()).unwrap_or_default();
    while let Some(next) = stack.pop() {
        if !seen.insert(next.clone()) {
            continue;
        }
        if let Some(i) = acting(&next) {
            found.insert(i);
        } else if let Some(unit) = units.get(&next) {
            stack.extend(edges(unit).iter().cloned());
        }
    }
    found.into_iter().collect()
}

/// The keys of `units`, every unit after its dependencies (Kahn's algorithm, ties by key). Units
/// in a cycle (which a checked policy cannot produce) come last, by key.
fn topological(units: &BTreeMap<String, Unit>) -> Vec<String> {
    let mut waiting: BTreeMap<&str, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for unit in units.values() {
        let deps: BTreeSet<&str> =
            unit.depends_on.iter().map(String::as_str).filter(|d| units.contains_key(*d) && *d != unit.key).collect();
        waiting.insert(&unit.key, deps.len());
        for dep in deps {
            dependents.entry(dep).or_default().push(&unit.key);
        }
    }
    let mut ready: BTreeSet<&str> = waiting.iter().filter(|(_, n)| **n == 0).map(|(k, _)| *k).collect();
    let mut order = Vec::with_capacity(units.len());
    while let Some(key) = ready.pop_first() {
        order.push(key.to_string());
        waiting.remove(key);
        for dependent in dependents.get(key).into_iter().flatten() {
            if let Some(n) = waiting.get_mut(dependent) {
                *n -= 1;
                if *n == 0 {
                    ready.insert(dependent);
                }
            }
        }
    }
    order.extend(waiting.keys().map(|k| k.to_string()));
    order
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn unit(key: &str, deps: &[&str]) -> Unit {
        Unit {
            key: key.into(),
            name: format!("{key}-name"),
            id: format!("{key}-id"),
            source: Source::Chart { chart: "./c".into(), repo: None, version: None, base_dir: "/policy".into() },
            cluster: "system.local".into(),
            k8s_namespace: "default".into(),
            namespace: "team".into(),
            service: "team.svc".into(),
            contract: "team.svc".into(),
            context: "dev".into(),
            component: key.into(),
            claims: vec!["team.c".into()],
            values: serde_json::json!({ "replicas": 1 }),
            discovery: serde_json::json!({}),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            content: Some("sha256:0".into()),
            files: Vec::new(),
            secrets: None,
        }
    }

    fn map(units: Vec<Unit>) -> BTreeMap<String, Unit> {
        units.into_iter().map(|u| (u.key.clone(), u)).collect()
    }

    fn shown(plan: &Plan) -> Vec<String> {
        plan.actions.iter().map(|a| format!("{} {} after {:?}", a.op.verb(), a.unit.key, a.after)).collect()
    }

    #[test]
    fn creates_come_dependencies_first() {
        // app needs cache and db; cache needs db; z is independent.
        let desired = map(vec![unit("app", &["cache", "db"]), unit("cache", &["db"]), unit("db", &[]), unit("z", &[])]);
        let plan = plan(&BTreeMap::new(), &desired, None, &|_| true);
        assert_eq!(
            shown(&plan),
            ["create db after []", "create cache after [0]", "create app after [0, 1]", "create z after []"]
        );
    }

    #[test]
    fn deletes_come_dependents_first() {
        let applied = map(vec![unit("app", &["cache"]), unit("cache", &["db"]), unit("db", &[]), unit("keep", &[])]);
        let desired = map(vec![unit("keep", &[])]);
        let plan = plan(&applied, &desired, None, &|_| true);
        assert_eq!(shown(&plan), ["delete app after []", "delete cache after [0]", "delete db after [1]"]);
        assert_eq!(plan.unchanged, ["keep"]);
    }

    #[test]
    fn updates_wait_for_changed_dependencies_through_unchanged_ones() {
        let applied = map(vec![unit("app", &["mid"]), unit("mid", &["db"]), unit("db", &[])]);
        let mut desired = applied.clone();
        desired.get_mut("db").unwrap().values = serde_json::json!({ "replicas": 2 });
        desired.get_mut("app").unwrap().values = serde_json::json!({ "replicas": 3 });
        let plan = plan(&applied, &desired, None, &|_| true);
        assert_eq!(shown(&plan), ["update db after []", "update app after [0]"]);
        assert_eq!(plan.actions[0].why, "values.replicas");
        assert_eq!(plan.unchanged, ["mid"]);
    }

    #[test]
    fn nothing_changed_is_an_empty_plan_unless_a_unit_went_missing() {
        let applied = map(vec![unit("a", &[]), unit("b", &["a"])]);
        let mut moved = applied.clone();
        for unit in moved.values_mut() {
            unit.source =
                Source::Chart { chart: "./c".into(), repo: None, version: None, base_dir: "/elsewhere".into() };
        }
        assert!(
            plan(&applied, &moved, None, &|_| true).is_empty(),
            "another checkout of the same policy changes nothing"
        );
        let missing = plan(&applied, &applied, None, &|u| u.key != "a");
        assert_eq!(shown(&missing), ["create a after []"]);
        assert_eq!(missing.actions[0].why, "missing from the target");
        let mut edited = applied.clone();
        edited.get_mut("b").unwrap().content = Some("sha256:1".into());
        assert_eq!(plan(&applied, &edited, None, &|_| true).actions[0].why, "chart files changed");
    }

    #[test]
    fn a_rotated_secret_is_a_change_and_a_secret_a_leaf() {
        let mut applied = unit("a", &[]);
        applied.values = serde_json::json!({ "password": { "$secret": { "env": "A" } } });
        applied.secrets = Some("sha256:1".into());
        let mut rotated = applied.clone();
        rotated.secrets = Some("sha256:2".into());
        assert_eq!(applied.changes_to(&rotated), ["secrets changed"]);
        let mut renamed = applied.clone();
        renamed.values = serde_json::json!({ "password": { "$secret": { "env": "B" } } });
        assert_eq!(applied.changes_to(&renamed), ["values.password"]);
        // A unit stored before secrets existed has none.
        let mut old = serde_json::to_value(unit("a", &[])).unwrap();
        old.as_object_mut().unwrap().remove("secrets");
        assert_eq!(serde_json::from_value::<Unit>(old).unwrap().secrets, None);
    }

    #[test]
    fn a_cycle_does_not_lose_units() {
        let desired = map(vec![unit("a", &["b"]), unit("b", &["a"]), unit("c", &[])]);
        let plan = plan(&BTreeMap::new(), &desired, None, &|_| true);
        assert_eq!(plan.actions.len(), 3);
        assert_eq!(plan.actions[0].unit.key, "c");
    }

    #[test]
    fn a_failed_claim_keeps_its_instances_and_every_delete_names_its_decision() {
        let mut shared = unit("shared", &[]);
        shared.claims = vec!["team.ok".into(), "team.broken".into()];
        let mut only_broken = unit("only_broken", &[]);
        only_broken.claims = vec!["team.broken".into()];
        let mut gone = unit("gone", &[]);
        gone.claims = vec!["team.removed".into()];
        let mut rejected = unit("rejected", &[]);
        rejected.claims = vec!["team.no".into()];
        let applied = map(vec![shared.clone(), only_broken, gone, rejected]);
        let mut still = shared.clone();
        still.claims = vec!["team.ok".into()];
        let desired = map(vec![still]);
        let ends = ClaimEnds(BTreeMap::from([
            ("team.ok".to_string(), ClaimEnd::Resolved),
            ("team.broken".to_string(), ClaimEnd::Failed("no cluster matches".into())),
            ("team.no".to_string(), ClaimEnd::Rejected("rule deny".into())),
        ]));
        let plan = plan(&applied, &desired, Some(&ends), &|_| true);
        let why: Vec<String> =
            plan.actions.iter().map(|a| format!("{} {}: {}", a.op.verb(), a.unit.key, a.why)).collect();
        assert_eq!(
            why,
            [
                "update shared: claims",
                "delete rejected: claim team.no rejected: rule deny",
                "delete gone: claim team.removed removed",
            ]
        );
        assert_eq!(plan.kept.len(), 1);
        assert_eq!(plan.kept[0].unit.key, "only_broken");
        assert_eq!(plan.kept[0].why, "claim failed: team.broken: no cluster matches");
        // Without claim ends (a rollback), what is not desired goes.
        let rollback = super::plan(&applied, &desired, None, &|_| true);
        assert_eq!(rollback.count(Op::Delete), 3);
        assert!(rollback.kept.is_empty());
    }
}
