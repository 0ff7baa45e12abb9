//! The Changing rule (docs/language.md §11.3): which objects one policy adds, modifies or removes
//! relative to another, and which of those changes a user may make under the **old** policy's
//! roles, so that no change grants itself the rights it needs.
//!
//! Objects are compared as the IR holds them, less where they were written (`origin`) and where
//! their files lie on disk (`base_dir`): moving a file or a checkout changes nothing.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::access::{Access, Role};
use crate::ir::{Program, SYSTEM_NAMESPACE};

/// The kinds of policy objects, as a change names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Label,
    /// A namespace's declaration: its owning team.
    Namespace,
    Service,
    Contract,
    Rule,
    Cluster,
    User,
    Team,
    Grant,
    Claim,
}

impl ObjectKind {
    pub fn name(self) -> &'static str {
        match self {
            ObjectKind::Label => "label",
            ObjectKind::Namespace => "namespace",
            ObjectKind::Service => "service",
            ObjectKind::Contract => "contract",
            ObjectKind::Rule => "rule",
            ObjectKind::Cluster => "cluster",
            ObjectKind::User => "user",
            ObjectKind::Team => "team",
            ObjectKind::Grant => "grant",
            ObjectKind::Claim => "claim",
        }
    }
}

/// What happened to an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    Added,
    Modified,
    Removed,
}

impl ChangeOp {
    fn verb(self) -> &'static str {
        match self {
            ChangeOp::Added => "add",
            ChangeOp::Modified => "change",
            ChangeOp::Removed => "remove",
        }
    }
}

/// One object added, modified or removed.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Change {
    pub op: ChangeOp,
    pub kind: ObjectKind,
    /// `namespace.name` (a user's name, a grant's role and namespaces).
    pub id: String,
    /// The namespace whose rights the change needs.
    pub namespace: String,
    /// The role it needs there.
    #[serde(serialize_with = "role_name")]
    pub needs: Role,
}

fn role_name<S: serde::Serializer>(role: &Role, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(role.name())
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} `{}`", self.op.verb(), self.kind.name(), self.id)
    }
}

/// Every object `new` adds, modifies or removes relative to `old`, in a stable order.
pub fn changes(old: &Program, new: &Program) -> Vec<Change> {
    let mut out = Vec::new();
    let (before, after) = (objects(old), objects(new));
    for (key, (namespace, value)) in &after {
        let op = match before.get(key) {
            None => ChangeOp::Added,
            Some((_, old_value)) if old_value != value => ChangeOp::Modified,
            Some(_) => continue,
        };
        out.push(change(op, key, namespace));
    }
    for (key, (namespace, _)) in &before {
        if !after.contains_key(key) {
            out.push(change(ChangeOp::Removed, key, namespace));
        }
    }
    out.sort();
    out
}

fn change(op: ChangeOp, (kind, id): &(ObjectKind, String), namespace: &str) -> Change {
    let needs = match kind {
        ObjectKind::Claim => Role::Consumer,
        // Everything in `system` (users, teams, grants, clusters, global rules) is the domain's.
        // A namespace's owner is its administrators' to change (they may hand it over; no one
        // else may take it), and declaring a new namespace is administering it.
        _ if namespace == SYSTEM_NAMESPACE => Role::DomainAdmin,
        _ => Role::NamespaceAdmin,
    };
    Change { op, kind: *kind, id: id.clone(), namespace: namespace.to_string(), needs }
}

/// Each object of a program by kind and id: its namespace and its content without origins.
fn objects(program: &Program) -> BTreeMap<(ObjectKind, String), (String, serde_json::Value)> {
    let mut out = BTreeMap::new();
    let mut put = |kind: ObjectKind, id: String, namespace: &str, value: serde_json::Value| {
        out.insert((kind, id), (namespace.to_string(), without_places(value)));
    };
    let namespace_of = |id: &str| id.split_once('.').map_or(SYSTEM_NAMESPACE, |(ns, _)| ns).to_string();
    for (id, label) in &program.labels {
        put(ObjectKind::Label, id.clone(), &namespace_of(id), json(label));
    }
    for (namespace, owner) in &program.namespaces {
        put(ObjectKind::Namespace, namespace.clone(), namespace, json(owner));
    }
    for (id, service) in &program.services {
        put(ObjectKind::Service, id.clone(), &namespace_of(id), json(service));
    }
    for (id, contract) in &program.contracts {
        put(ObjectKind::Contract, id.clone(), &contract.namespace, json(contract));
    }
    for rule in program.rules.values().flatten() {
        put(ObjectKind::Rule, format!("{}.{}", rule.namespace, rule.name), &rule.namespace, json(rule));
    }
    for (id, cluster) in &program.clusters {
        put(ObjectKind::Cluster, id.clone(), SYSTEM_NAMESPACE, json(cluster));
    }
    for (id, user) in &program.users {
        put(ObjectKind::User, id.clone(), SYSTEM_NAMESPACE, json(user));
    }
    for (id, team) in &program.teams {
        put(ObjectKind::Team, id.clone(), SYSTEM_NAMESPACE, json(team));
    }
    // Grants have no names: each is known by what it says (a changed grant is one removed and
    // one added; identical grants count once).
    for grant in &program.grants {
        let value = json(grant);
        let scope = grant.namespaces.as_ref().map_or_else(|| "every namespace".to_string(), |n| n.join(", "));
        let digest = crate::digest::sha256(&value.to_string());
        let short = digest.trim_start_matches("sha256:").get(..12).unwrap_or_default().to_string();
        let id = format!("{} on {scope} ({short})", grant.role);
        put(ObjectKind::Grant, id, SYSTEM_NAMESPACE, value);
    }
    for claim in &program.claims {
        put(ObjectKind::Claim, claim.id(), &claim.namespace, json(claim));
    }
    out
}

fn json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// `value` without `origin` and `base_dir` entries, at any depth.
fn without_places(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.into_iter()
                .filter(|(k, _)| k != "origin" && k != "base_dir")
                .map(|(k, v)| (k, without_places(v)))
                .collect(),
        ),
        serde_json::Value::Array(items) => serde_json::Value::Array(items.into_iter().map(without_places).collect()),
        other => other,
    }
}

/// Why a user may not make a policy change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "refused", rename_all = "snake_case")]
pub enum Refusal {
    /// The old policy grants roles and does not declare this user: they may change nothing.
    NotAUser { user: String },
    /// The change needs a role the user lacks in its namespace (`has`: their role there).
    Change {
        change: Change,
        #[serde(serialize_with = "role_opt")]
        has: Option<Role>,
    },
}

fn role_opt<S: serde::Serializer>(role: &Option<Role>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(role.map_or("none", Role::name))
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotAUser { user } => write!(
                f,
                "`{user}` is not a user of the policy, which grants roles: only its users may change it (--as USER or APTC_USER)"
            ),
            Refusal::Change { change, has } => write!(
                f,
                "may not {change}: namespace `{}` needs {} (their role there: {})",
                change.namespace,
                change.needs.name(),
                has.map_or("none", Role::name)
            ),
        }
    }
}

/// The changes from `old` to `new` that `user` may not make under `old`'s roles (§11.3); empty
/// when access control is off in `old` (it declares no grants). A user `old` does not declare is
/// refused whatever changes, even none.
pub fn refusals(old: &Program, new: &Program, user: &str) -> Vec<Refusal> {
    let access = Access::new(old);
    if !access.enabled() {
        return Vec::new();
    }
    let Some(subject) = access.user(user) else { return vec![Refusal::NotAUser { user: user.to_string() }] };
    changes(old, new)
        .into_iter()
        .filter_map(|change| {
            let has = access.role(&subject, &change.namespace);
            (has < Some(change.needs)).then_some(Refusal::Change { change, has })
        })
        .collect()
}
