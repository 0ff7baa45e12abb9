//! What a deploy or a rollback did, as data for tools (`aptc deploy --format json`, also with
//! `--dry-run`, and `aptc rollback`; docs/formats.md, `docs/schema/deploy.schema.json`).
//!
//! The report is the plan, not the desired state: each action with its [`Kind`] (create, update,
//! delete), each instance left unchanged or kept for a failed claim, the instance it concerns and
//! why; and, once applied, each action's result with its timing. A pipeline reads it to know what
//! changed, and why, without parsing text meant for people. Secrets never appear: the units carry
//! secret references, and the report names instances, not their values.

use aptc_core::resolve::{ClaimOutcome, Status as ClaimStatus};
use serde::Serialize;

use crate::apply::Outcome;
use crate::deploy::Prepared;
use crate::deployer::Ended;
use crate::plan::{Kind, Unit};
use crate::store::Revision;

/// The version of the report; raised when a field changes meaning or goes away (adding one does
/// not).
pub const FORMAT_VERSION: u32 = 1;

/// One deploy or rollback, planned and perhaps applied.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub format_version: u32,
    /// `deploy` or `rollback`.
    pub command: String,
    pub dry_run: bool,
    /// Where it applies (`render:/abs/dir`, `cluster`, with the reason for `auto`).
    pub target: String,
    /// The number the revision gets (or got).
    pub revision: u64,
    /// The last revision before it, if any.
    pub previous: Option<u64>,
    /// How it ended.
    pub status: Status,
    /// The plan's actions, in plan order, then the unchanged and kept instances.
    pub actions: Vec<Entry>,
    /// Why the plan was refused (one line each), when it was.
    pub refusals: Vec<String>,
    /// The whole apply, when something was applied.
    pub duration_ms: Option<u64>,
    /// Claims that did not resolve, so deploy nothing new (a failed one keeps what it had, and
    /// makes the deploy exit 1); empty for a rollback, which applies a recorded state.
    pub not_deployed: Vec<NotDeployed>,
}

/// A claim that did not resolve.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NotDeployed {
    /// `namespace.name`.
    pub claim: String,
    /// `rejected` (a rule or access decided so) or `failed` (a fault of the policy).
    pub status: &'static str,
    pub reason: String,
}

/// How a deploy ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Nothing to change.
    NoChanges,
    /// A dry run with changes: nothing applied, nothing recorded.
    DryRun,
    /// Every action succeeded.
    Applied,
    /// Applied and recorded, but some action failed or was skipped.
    Failed,
    /// Stopped by a signal: what ran is recorded, the rest was not started.
    Interrupted,
    /// The deploying user may not make some change (`refusals`), or the plan deletes more than
    /// half of what is deployed without `--allow-mass-delete`: nothing applied.
    Refused,
    /// Not confirmed: nothing applied.
    Declined,
}

/// One line of the plan: an action, or an instance left as it is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entry {
    pub kind: Kind,
    pub instance: Instance,
    /// Why: `new`, the fields that changed, the decision that removed it, the failed claim that
    /// keeps it; empty for an unchanged instance.
    pub reason: String,
    /// Indices (in `actions`) of the actions it waits for.
    pub after: Vec<usize>,
    /// How the action ended; `null` before applying, and for unchanged and kept instances.
    pub result: Option<ActionResult>,
}

/// The instance an entry concerns.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Instance {
    pub key: String,
    /// Its Kubernetes name (the Helm release of a chart).
    pub name: String,
    /// `system.NAME` of its cluster.
    pub cluster: String,
    pub k8s_namespace: String,
    /// What it deploys: `chart NAME VERSION`, `manifests GLOB`.
    pub source: String,
}

impl Instance {
    fn of(unit: &Unit) -> Instance {
        Instance {
            key: unit.key.clone(),
            name: unit.name.clone(),
            cluster: unit.cluster.clone(),
            k8s_namespace: unit.k8s_namespace.clone(),
            source: unit.source.describe(),
        }
    }
}

/// How one action ended, with when it started (from the start of the apply) and how long it took.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ActionResult {
    /// `succeeded`, `failed`, `skipped` (a prerequisite failed) or `interrupted` (not started).
    pub outcome: &'static str,
    /// What was done (`succeeded`), the error (`failed`), or why it did not run.
    pub detail: String,
    pub started_ms: u64,
    pub duration_ms: u64,
}

impl Report {
    /// The plan `prepared` made for `command` on `target`, before anything is applied.
    pub fn planned(command: &str, dry_run: bool, target: &str, prepared: &Prepared) -> Report {
        let plan = &prepared.plan;
        let mut actions: Vec<Entry> = plan
            .actions
            .iter()
            .map(|action| Entry {
                kind: action.op.kind(),
                instance: Instance::of(&action.unit),
                reason: action.why.clone(),
                after: action.after.clone(),
                result: None,
            })
            .collect();
        actions.extend(plan.unchanged.iter().filter_map(|key| prepared.applied.get(key)).map(|applied| Entry {
            kind: Kind::Unchanged,
            instance: Instance::of(&applied.unit),
            reason: String::new(),
            after: Vec::new(),
            result: None,
        }));
        actions.extend(plan.kept.iter().map(|kept| Entry {
            kind: Kind::Kept,
            instance: Instance::of(&kept.unit),
            reason: kept.why.clone(),
            after: Vec::new(),
            result: None,
        }));
        Report {
            format_version: FORMAT_VERSION,
            command: command.to_string(),
            dry_run,
            target: target.to_string(),
            revision: prepared.revision,
            previous: prepared.previous,
            status: if plan.is_empty() { Status::NoChanges } else { Status::DryRun },
            actions,
            refusals: Vec::new(),
            duration_ms: None,
            not_deployed: Vec::new(),
        }
    }

    /// The report with the claims that did not resolve (`outcomes` of claims other than
    /// resolved).
    pub fn not_deployed(mut self, outcomes: &[ClaimOutcome]) -> Report {
        self.not_deployed = outcomes
            .iter()
            .filter(|o| o.status != ClaimStatus::Resolved)
            .map(|o| NotDeployed {
                claim: o.claim.clone(),
                status: if o.status == ClaimStatus::Rejected { "rejected" } else { "failed" },
                reason: o.reason.as_deref().unwrap_or_default().to_string(),
            })
            .collect();
        self
    }

    /// The report completed with how the deploy ended: its status, and each action's result
    /// from the recorded revision (whose actions are in plan order).
    pub fn ended(mut self, target: &str, ended: &Ended) -> Report {
        self.target = target.to_string();
        let revision = match ended {
            Ended::NoChanges { revision, .. } => {
                self.status = Status::NoChanges;
                if let Some(revision) = revision {
                    self.revision = revision.number;
                }
                return self;
            }
            Ended::DryRun => {
                self.status = Status::DryRun;
                return self;
            }
            Ended::Declined => {
                self.status = Status::Declined;
                return self;
            }
            Ended::Refused { refusals, .. } => {
                self.status = Status::Refused;
                self.refusals = refusals.clone();
                return self;
            }
            Ended::MassDelete { deletes, deployed } => {
                self.status = Status::Refused;
                self.refusals = deletes
                    .iter()
                    .map(|line| {
                        format!("mass delete ({} of {deployed} deployed; --allow-mass-delete): {line}", deletes.len())
                    })
                    .collect();
                return self;
            }
            Ended::Applied(revision) => {
                let counts = revision.counts();
                self.status = if counts.failed > 0 || counts.skipped > 0 { Status::Failed } else { Status::Applied };
                revision
            }
            Ended::Interrupted { revision, .. } => {
                self.status = Status::Interrupted;
                revision
            }
        };
        self.record(revision);
        self
    }

    /// Each action's result from `revision` (an action is found by its instance and kind).
    fn record(&mut self, revision: &Revision) {
        self.revision = revision.number;
        self.duration_ms = Some(revision.duration_ms);
        let results = self.actions.iter_mut().filter(|entry| !matches!(entry.kind, Kind::Unchanged | Kind::Kept));
        for entry in results {
            let Some(record) =
                revision.actions.iter().find(|r| r.key == entry.instance.key && r.op.kind() == entry.kind)
            else {
                continue;
            };
            let report = &record.report;
            let (outcome, detail) = match &report.outcome {
                Outcome::Succeeded { detail } => ("succeeded", detail.clone()),
                Outcome::Failed { error, .. } => ("failed", error.clone()),
                Outcome::Skipped { reason } => ("skipped", reason.clone()),
                Outcome::Interrupted => ("interrupted", crate::apply::INTERRUPTED.to_string()),
            };
            entry.result =
                Some(ActionResult { outcome, detail, started_ms: report.started_ms, duration_ms: report.duration_ms });
        }
    }
}
