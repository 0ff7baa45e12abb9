//! Drift: what the target holds now against what the last revision left there.
//!
//! When a revision is recorded, each unit it applied gets the driver's fingerprint of it
//! ([`record_fingerprints`]; for the render driver, the SHA-256 of every rendered file). Later,
//! [`detect`] compares the target with that: a unit that is gone (its directory, or aptc's
//! `instance.json` in it, for the render driver) is *missing*; one whose files differ is
//! *modified*. Units recorded before fingerprints existed are only checked for presence.
//!
//! Repairing drift is a normal plan and apply: the drifted units count as absent from the target
//! ([`Drifted`]), so the plan creates or updates them again, as a new revision.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::apply::Applied;
use crate::driver::{ActionResult, Driver, DriverError};
use crate::plan::{Action, Plan, Unit};

/// How a unit drifted. As JSON (kept in the store's last drift check), `kind` names the variant
/// beside the unit's fields: `{"kind": "modified", "changed": […], …}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DriftKind {
    /// Not on the target any more.
    Missing,
    /// On the target, with files that differ from what was applied: changed, added or removed.
    Modified { changed: Vec<String>, added: Vec<String>, removed: Vec<String> },
}

impl DriftKind {
    /// `missing` or `modified`, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            DriftKind::Missing => "missing",
            DriftKind::Modified { .. } => "modified",
        }
    }

    /// `missing`, or `modified: manifest.yaml changed, x.yaml added`.
    pub fn describe(&self) -> String {
        match self {
            DriftKind::Missing => "missing from the target".to_string(),
            DriftKind::Modified { changed, added, removed } => {
                let mut parts = Vec::new();
                for (files, what) in [(changed, "changed"), (added, "added"), (removed, "removed")] {
                    if !files.is_empty() {
                        parts.push(format!("{} {what}", files.join(", ")));
                    }
                }
                format!("modified: {}", parts.join("; "))
            }
        }
    }
}

/// One drifted unit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    pub key: String,
    pub name: String,
    /// `cluster/k8s-namespace`.
    pub place: String,
    #[serde(flatten)]
    pub kind: DriftKind,
}

/// The units of `applied` whose state on the target differs from what was applied, in key order.
pub fn detect(applied: &BTreeMap<String, Applied>, driver: &dyn Driver) -> Vec<Drift> {
    let mut out = Vec::new();
    for (key, entry) in applied {
        let unit = &entry.unit;
        let kind = if !driver.is_present(unit) {
            Some(DriftKind::Missing)
        } else if let Some(recorded) = &entry.fingerprint {
            match driver.fingerprint(unit) {
                None => Some(DriftKind::Missing),
                Some(live) => compare(recorded, &live),
            }
        } else {
            None
        };
        if let Some(kind) = kind {
            out.push(Drift { key: key.clone(), name: unit.name.clone(), place: unit.place(), kind });
        }
    }
    out
}

fn compare(recorded: &BTreeMap<String, String>, live: &BTreeMap<String, String>) -> Option<DriftKind> {
    let mut changed = Vec::new();
    let mut removed = Vec::new();
    for (name, hash) in recorded {
        match live.get(name) {
            None => removed.push(name.clone()),
            Some(now) if now != hash => changed.push(name.clone()),
            Some(_) => {}
        }
    }
    let added: Vec<String> = live.keys().filter(|n| !recorded.contains_key(*n)).cloned().collect();
    if changed.is_empty() && added.is_empty() && removed.is_empty() {
        None
    } else {
        Some(DriftKind::Modified { changed, added, removed })
    }
}

/// Records the driver's fingerprint of every unit that revision `revision` applied (read back
/// from the target right after applying).
pub fn record_fingerprints(applied: &mut BTreeMap<String, Applied>, driver: &dyn Driver, revision: u64) {
    for entry in applied.values_mut() {
        if entry.revision == revision {
            entry.fingerprint = driver.fingerprint(&entry.unit);
        }
    }
}

/// A driver whose drifted units count as absent, so that a plan applies them again. Everything
/// else is the wrapped driver's.
pub struct Drifted<'a> {
    pub driver: &'a dyn Driver,
    /// Keys of the drifted units.
    pub keys: BTreeSet<String>,
}

impl Driver for Drifted<'_> {
    fn target(&self) -> String {
        self.driver.target()
    }
    fn describe(&self) -> String {
        self.driver.describe()
    }
    fn preflight(&self, plan: &Plan) -> Result<(), DriverError> {
        self.driver.preflight(plan)
    }
    fn is_present(&self, unit: &Unit) -> bool {
        !self.keys.contains(&unit.key) && self.driver.is_present(unit)
    }
    fn apply(&self, revision: u64, action: &Action) -> Result<ActionResult, DriverError> {
        self.driver.apply(revision, action)
    }
    fn fingerprint(&self, unit: &Unit) -> Option<BTreeMap<String, String>> {
        self.driver.fingerprint(unit)
    }
}

/// Says in the plan why drifted units are applied again (`drift: modified: …`), and updates (not
/// creates) the modified ones.
pub fn explain(plan: &mut Plan, drift: &[Drift]) {
    let by_key: BTreeMap<&str, &Drift> = drift.iter().map(|d| (d.key.as_str(), d)).collect();
    for action in &mut plan.actions {
        if let Some(found) = by_key.get(action.unit.key.as_str())
            && action.why == "missing from the target"
        {
            action.why = format!("drift: {}", found.kind.describe());
            if matches!(found.kind, DriftKind::Modified { .. }) {
                action.op = crate::plan::Op::Update;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helm::HelmError;
    use crate::plan::{Op, tests::unit};
    use crate::render::RenderDriver;
    use crate::source::Source;

    /// A manifests unit rendered into `out` as revision 1, and the applied state a fake previous
    /// revision recorded for it (with fingerprints).
    fn rendered(policy: &std::path::Path, out: &std::path::Path) -> (RenderDriver, BTreeMap<String, Applied>) {
        std::fs::create_dir_all(policy.join("k8s")).unwrap();
        std::fs::write(policy.join("k8s/a.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n").unwrap();
        let mut unit = unit("local/default/team.svc/dev/web", &[]);
        unit.name = "svc-web-0123456789".into();
        unit.id = "0123456789".into();
        unit.source = Source::Manifests { glob: "k8s/*.yaml".into(), base_dir: policy.to_string_lossy().into_owned() };
        let text = std::fs::read_to_string(policy.join("k8s/a.yaml")).unwrap();
        unit.files = vec![aptc_core::resolve::RenderedFile { path: "k8s/a.yaml".into(), text }];
        let driver = RenderDriver::new(out, Err(HelmError::NotFound { place: "in this test".into() }));
        let action = Action { op: Op::Create, unit: unit.clone(), why: "new".into(), after: vec![] };
        driver.apply(1, &action).unwrap();
        let mut applied =
            BTreeMap::from([(unit.key.clone(), Applied { revision: 1, unit: unit.clone(), fingerprint: None })]);
        record_fingerprints(&mut applied, &driver, 1);
        (driver, applied)
    }

    #[test]
    fn an_unchanged_rendering_has_no_drift() {
        let (policy, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (driver, applied) = rendered(policy.path(), out.path());
        let fingerprint = applied.values().next().unwrap().fingerprint.clone().unwrap();
        assert_eq!(fingerprint.keys().collect::<Vec<_>>(), ["instance.json", "manifests/01-a.yaml"]);
        assert_eq!(detect(&applied, &driver), []);
    }

    #[test]
    fn a_missing_directory_is_drift() {
        let (policy, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (driver, applied) = rendered(policy.path(), out.path());
        std::fs::remove_dir_all(out.path().join("local/default/svc-web-0123456789")).unwrap();
        let drift = detect(&applied, &driver);
        assert_eq!(drift.len(), 1);
        assert_eq!(drift[0].kind, DriftKind::Missing);
        assert_eq!(drift[0].name, "svc-web-0123456789");
    }

    #[test]
    fn a_modified_added_or_removed_file_is_drift_and_repairing_plans_an_update() {
        let (policy, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (driver, applied) = rendered(policy.path(), out.path());
        let dir = out.path().join("local/default/svc-web-0123456789");
        std::fs::write(dir.join("manifests/01-a.yaml"), "edited by hand\n").unwrap();
        std::fs::write(dir.join("extra.yaml"), "x\n").unwrap();
        let drift = detect(&applied, &driver);
        assert_eq!(
            drift[0].kind,
            DriftKind::Modified {
                changed: vec!["manifests/01-a.yaml".into()],
                added: vec!["extra.yaml".into()],
                removed: vec![]
            }
        );
        assert_eq!(drift[0].kind.describe(), "modified: manifests/01-a.yaml changed; extra.yaml added");

        // Repairing: the drifted unit counts as absent, so the plan applies it again.
        let wrapped = Drifted { driver: &driver, keys: drift.iter().map(|d| d.key.clone()).collect() };
        let current: BTreeMap<String, Unit> = applied.iter().map(|(k, a)| (k.clone(), a.unit.clone())).collect();
        let mut plan = crate::plan::plan(&current, &current, None, &|u| wrapped.is_present(u));
        explain(&mut plan, &drift);
        assert_eq!(plan.actions.len(), 1);
        assert_eq!(plan.actions[0].op, Op::Update);
        assert!(plan.actions[0].why.starts_with("drift: modified"), "{}", plan.actions[0].why);
        wrapped.apply(2, &plan.actions[0]).unwrap();
        let mut after = applied.clone();
        after.values_mut().for_each(|a| a.revision = 2);
        record_fingerprints(&mut after, &driver, 2);
        assert_eq!(detect(&after, &driver), []);
        assert!(!dir.join("extra.yaml").exists());

        // A file removed by hand.
        std::fs::remove_file(dir.join("manifests/01-a.yaml")).unwrap();
        assert!(
            matches!(&detect(&after, &driver)[0].kind, DriftKind::Modified { removed, .. } if removed == &["manifests/01-a.yaml"])
        );
    }

    #[test]
    fn a_revision_without_fingerprints_is_checked_for_presence_only() {
        let (policy, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (driver, mut applied) = rendered(policy.path(), out.path());
        applied.values_mut().for_each(|a| a.fingerprint = None);
        let old: Applied = serde_json::from_value(serde_json::json!({
            "revision": 1,
            "unit": applied.values().next().unwrap().unit,
        }))
        .unwrap();
        assert_eq!(old.fingerprint, None, "old revisions stay readable");
        let dir = out.path().join("local/default/svc-web-0123456789");
        std::fs::write(dir.join("manifests/01-a.yaml"), "edited\n").unwrap();
        assert_eq!(detect(&applied, &driver), []);
        std::fs::remove_file(dir.join("instance.json")).unwrap();
        assert_eq!(detect(&applied, &driver)[0].kind, DriftKind::Missing);
    }
}
