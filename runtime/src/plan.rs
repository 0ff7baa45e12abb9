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

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::source::{DigestCache, Source, rendered_digest};
use aptc_core::resolve::{DesiredState, InstanceKind, RenderedFile};
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
    /// A digest of the secrets its values refer to ([`crate::secrets::digest`]), so that a rotated
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
pub fn units(state: &DesiredState) -> BTreeMap<String, Unit> {
    let mut digests = DigestCache::default();
    let mut out = BTreeMap::new();
    for instance in state.instances.values() {
        let source = match &instance.kind {
            InstanceKind::Chart { chart, repo, version, base_dir } => Source::Chart {
                chart: chart.clone(),
                repo: repo.clone(),
                version: version.clone(),
                base_dir: base_dir.clone(),
            },
            InstanceKind::Manifests { glob, base_dir, .. } => {
                Source::Manifests { glob: glob.clone(), base_dir: base_dir.clone() }
            }
            InstanceKind::Service | InstanceKind::Uses { .. } => continue,
        };
        let files = match &instance.kind {
            InstanceKind::Manifests { files, .. } => files.clone(),
            _ => Vec::new(),
        };
        let content = content(&source, &files, &mut digests);
        let secrets = crate::secrets::digest(&instance.values, source.base_dir());
        out.insert(
            instance.key.clone(),
            Unit {
                key: instance.key.clone(),
                name: instance.name.clone(),
                id: instance.id.clone(),
                source,
                cluster: instance.cluster.clone(),
                k8s_namespace: instance.k8s_namespace.clone(),
                namespace: instance.service.split('.').next().unwrap_or_default().to_string(),
                service: instance.service.clone(),
                contract: instance.contract.clone(),
                context: instance.context.clone(),
                component: instance.component.clone(),
                claims: instance.claims.iter().map(|c| c.claim.clone()).collect(),
                values: instance.values.clone(),
                discovery: instance.discovery.clone(),
                depends_on: unit_dependencies(state, &instance.key),
                content,
                files,
                secrets,
            },
        );
    }
    out
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
pub fn refresh_digests(units: &mut BTreeMap<String, Unit>) {
    let mut digests = DigestCache::default();
    for unit in units.values_mut() {
        unit.content = content(&unit.source, &unit.files, &mut digests);
        unit.secrets = crate::secrets::digest(&unit.values, unit.source.base_dir());
    }
}

/// What an action does to its unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Update,
    Delete,
}

impl Op {
    pub fn verb(self) -> &'static str {
        match self {
            Op::Create => "create",
            Op::Update => "update",
            Op::Delete => "delete",
        }
    }

    pub fn past(self) -> &'static str {
        match self {
            Op::Create => "created",
            Op::Update => "updated",
            Op::Delete => "deleted",
        }
    }
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub op: Op,
    /// The desired unit (for a delete: the applied one).
    pub unit: Unit,
    /// Why: `new`, the changed fields, `no longer desired`, `missing from the target`.
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
/// an applied unit is still found on the target; one that is not is created again.
pub fn plan(
    applied: &BTreeMap<String, Unit>,
    desired: &BTreeMap<String, Unit>,
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
    // Deletes: dependents first, in the order of the applied graph reversed.
    let removed: BTreeSet<&String> = applied.keys().filter(|k| !desired.contains_key(*k)).collect();
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
        if !removed.contains(&key) {
            continue;
        }
        let after = dependents
            .get(&key)
            .map(|ds| {
                let mut after: Vec<usize> = ds.iter().filter_map(|d| deletes.get(d).copied()).collect();
                after.sort_unstable();
                after
            })
            .unwrap_or_default();
        deletes.insert(key.clone(), actions.len());
        actions.push(Action { op: Op::Delete, unit: applied[&key].clone(), why: "no longer desired".into(), after });
    }
    Plan { actions, unchanged }
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
        let plan = plan(&BTreeMap::new(), &desired, &|_| true);
        assert_eq!(
            shown(&plan),
            ["create db after []", "create cache after [0]", "create app after [0, 1]", "create z after []"]
        );
    }

    #[test]
    fn deletes_come_dependents_first() {
        let applied = map(vec![unit("app", &["cache"]), unit("cache", &["db"]), unit("db", &[]), unit("keep", &[])]);
        let desired = map(vec![unit("keep", &[])]);
        let plan = plan(&applied, &desired, &|_| true);
        assert_eq!(shown(&plan), ["delete app after []", "delete cache after [0]", "delete db after [1]"]);
        assert_eq!(plan.unchanged, ["keep"]);
    }

    #[test]
    fn updates_wait_for_changed_dependencies_through_unchanged_ones() {
        let applied = map(vec![unit("app", &["mid"]), unit("mid", &["db"]), unit("db", &[])]);
        let mut desired = applied.clone();
        desired.get_mut("db").unwrap().values = serde_json::json!({ "replicas": 2 });
        desired.get_mut("app").unwrap().values = serde_json::json!({ "replicas": 3 });
        let plan = plan(&applied, &desired, &|_| true);
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
        assert!(plan(&applied, &moved, &|_| true).is_empty(), "another checkout of the same policy changes nothing");
        let missing = plan(&applied, &applied, &|u| u.key != "a");
        assert_eq!(shown(&missing), ["create a after []"]);
        assert_eq!(missing.actions[0].why, "missing from the target");
        let mut edited = applied.clone();
        edited.get_mut("b").unwrap().content = Some("sha256:1".into());
        assert_eq!(plan(&applied, &edited, &|_| true).actions[0].why, "chart files changed");
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
        let plan = plan(&BTreeMap::new(), &desired, &|_| true);
        assert_eq!(plan.actions.len(), 3);
        assert_eq!(plan.actions[0].unit.key, "c");
    }
}
