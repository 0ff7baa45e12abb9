//! What a policy change does: the difference between two desired states (the what-if).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;

use crate::resolve::{DesiredState, Instance, InstanceKind, RenderedFile, Status};
use crate::secret::{SecretRef, redact};

/// Instances added, removed and changed, and claims whose outcome changed.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StateDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<InstanceChange>,
    pub claims: Vec<ClaimChange>,
}

/// One instance present on both sides with different contents.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InstanceChange {
    pub key: String,
    /// `values.a.b` / `discovery.x` / `claims` / `kind` with old and new values (JSON text).
    pub fields: Vec<(String, String, String)>,
}

/// A claim whose outcome differs.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ClaimChange {
    pub claim: String,
    pub before: String,
    pub after: String,
}

impl StateDiff {
    /// Whether the change has no effect at all.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty() && self.claims.is_empty()
    }
}

/// The difference from `old` to `new`.
pub fn diff(old: &DesiredState, new: &DesiredState) -> StateDiff {
    let mut out = StateDiff::default();
    for (key, after) in &new.instances {
        match old.instances.get(key) {
            None => out.added.push(key.clone()),
            Some(before) => {
                let fields = instance_changes(before, after);
                if !fields.is_empty() {
                    out.changed.push(InstanceChange { key: key.clone(), fields });
                }
            }
        }
    }
    out.removed = old.instances.keys().filter(|k| !new.instances.contains_key(*k)).cloned().collect();
    let claims: BTreeSet<&String> = old.claims.keys().chain(new.claims.keys()).collect();
    for claim in claims {
        let describe = |state: &DesiredState| match state.claims.get(claim) {
            None => "absent".to_string(),
            Some(outcome) => match outcome.status {
                Status::Resolved => format!("resolved → {}", outcome.root.clone().unwrap_or_default()),
                Status::Rejected | Status::Failed => {
                    format!("{:?}: {}", outcome.status, outcome.reason.clone().unwrap_or_default()).to_lowercase()
                }
            },
        };
        let (before, after) = (describe(old), describe(new));
        if before != after {
            out.claims.push(ClaimChange { claim: claim.clone(), before, after });
        }
    }
    out
}

fn instance_changes(before: &Instance, after: &Instance) -> Vec<(String, String, String)> {
    let mut fields = Vec::new();
    json_changes("values", &before.values, &after.values, &mut fields);
    json_changes("discovery", &before.discovery, &after.discovery, &mut fields);
    let claims = |i: &Instance| i.claims.iter().map(|c| c.claim.clone()).collect::<Vec<_>>().join(", ");
    if claims(before) != claims(after) {
        fields.push(("claims".into(), claims(before), claims(after)));
    }
    if located(&before.kind) != located(&after.kind) {
        fields.push(("kind".into(), format!("{:?}", before.kind), format!("{:?}", after.kind)));
    } else if let (InstanceKind::Manifests { files: old, .. }, InstanceKind::Manifests { files: new, .. }) =
        (&before.kind, &after.kind)
    {
        // A rendered manifest is shown by a short digest of its text: it may be long.
        let digest = |files: &[RenderedFile], path: &str| {
            files
                .iter()
                .find(|f| f.path == path)
                .map_or_else(|| "(none)".to_string(), |f| crate::digest::sha256(&f.text).chars().take(19).collect())
        };
        let paths: BTreeSet<&str> = old.iter().chain(new).map(|f| f.path.as_str()).collect();
        for path in paths {
            let (a, b) = (digest(old, path), digest(new, path));
            if a != b {
                fields.push((format!("manifest {path}"), a, b));
            }
        }
    }
    fields
}

/// The kind without the directory the policy was read from (two checkouts of one policy in
/// different places deploy the same thing) and without rendered manifests (compared by file).
fn located(kind: &InstanceKind) -> InstanceKind {
    match kind {
        InstanceKind::Chart { chart, repo, version, .. } => InstanceKind::Chart {
            chart: chart.clone(),
            repo: repo.clone(),
            version: version.clone(),
            base_dir: Arc::from(""),
        },
        InstanceKind::Manifests { glob, .. } => {
            InstanceKind::Manifests { glob: glob.clone(), base_dir: Arc::from(""), files: Vec::new() }
        }
        other => other.clone(),
    }
}

/// Leaf-level differences between two JSON values, with dotted paths; a secret is a leaf, shown
/// as `***`. Public for the dashboard's diff of two revisions' units.
pub fn json_changes(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<(String, String, String)>) {
    match (a, b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y))
            if SecretRef::from_json(a).is_none() && SecretRef::from_json(b).is_none() =>
        {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for key in keys {
                let null = serde_json::Value::Null;
                json_changes(&format!("{path}.{key}"), x.get(key).unwrap_or(&null), y.get(key).unwrap_or(&null), out);
            }
        }
        _ if a != b => out.push((path.to_string(), show(a), show(b))),
        _ => {}
    }
}

fn show(value: &serde_json::Value) -> String {
    if value.is_null() { "(none)".to_string() } else { redact(value).to_string() }
}
