//! A deploy from start to end, for the CLI: plan against what the last revision left applied,
//! then apply with a driver and record the revision.
//!
//! ```text
//! desired units ──plan against── last revision's `applied` ──> Plan
//! Plan ──driver (parallel, dependencies first)──> reports ──> Revision (recorded) + new `applied`
//! ```
//!
//! A plan with no action records nothing: a revision is a change (or an attempt at one).

use std::collections::BTreeMap;
use std::time::Instant;

use crate::apply::{Applied, Progress, applied_after, execute};
use crate::driver::Driver;
use crate::plan::{Plan, Unit, plan};
use crate::store::{Cause, Revision, Store, action_records, now_rfc3339};

/// A deploy that cannot start or be recorded.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DeployError(pub String);

impl From<crate::store::StoreError> for DeployError {
    fn from(error: crate::store::StoreError) -> DeployError {
        DeployError(error.0)
    }
}

/// What a deploy would do.
#[derive(Clone, Debug)]
pub struct Prepared {
    /// The number the revision will get.
    pub revision: u64,
    /// The last revision, if any.
    pub previous: Option<u64>,
    /// What the target holds now (by the store).
    pub applied: BTreeMap<String, Applied>,
    pub plan: Plan,
}

/// Plans `desired` against what the store's last revision left applied (nothing without a store
/// or a revision). A store whose revisions went to another target is refused.
pub fn prepare(
    store: Option<&Store>,
    driver: &dyn Driver,
    desired: &BTreeMap<String, Unit>,
) -> Result<Prepared, DeployError> {
    let last = match store {
        Some(store) => store.last()?,
        None => None,
    };
    if let (Some(store), Some(last)) = (store, &last)
        && last.target != driver.target()
    {
        return Err(DeployError(format!(
            "{} holds the revisions of `{}`, not of `{}`: deploy to that target, or keep another state file \
(--state) for this one",
            store.path().display(),
            last.target,
            driver.target()
        )));
    }
    let applied = last.as_ref().map(|r| r.applied.clone()).unwrap_or_default();
    let current: BTreeMap<String, Unit> = applied.iter().map(|(k, a)| (k.clone(), a.unit.clone())).collect();
    let plan = plan(&current, desired, &|unit| driver.is_present(unit));
    Ok(Prepared {
        revision: last.as_ref().map_or(1, |r| r.number + 1),
        previous: last.map(|r| r.number),
        applied,
        plan,
    })
}

/// Who, why and what: the parts of a revision that do not come from applying.
pub struct Request {
    pub user: String,
    pub cause: Cause,
    /// `sha256:` of the policy (see [`policy_hash`]).
    pub policy: String,
    pub desired: BTreeMap<String, Unit>,
    /// The full desired state, kept with the revision.
    pub desired_state: serde_json::Value,
    /// At most this many actions at once.
    pub parallel: usize,
}

/// Applies a prepared plan and records the revision (also when actions failed: it says exactly
/// what was done).
pub fn apply(
    store: &Store,
    driver: &dyn Driver,
    prepared: Prepared,
    request: Request,
    progress: &dyn Progress,
) -> Result<Revision, DeployError> {
    let next = store.next_number()?;
    if next != prepared.revision {
        return Err(DeployError(format!(
            "{} changed since the plan was made (revision {next} is next, not {}); plan again",
            store.path().display(),
            prepared.revision
        )));
    }
    let time = now_rfc3339();
    let started = Instant::now();
    let reports = execute(&prepared.plan, driver, prepared.revision, request.parallel, progress);
    let applied = applied_after(&prepared.applied, &prepared.plan, &reports, prepared.revision);
    let revision = Revision {
        number: prepared.revision,
        time,
        user: request.user,
        cause: request.cause,
        policy: request.policy,
        target: driver.target(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        actions: action_records(&prepared.plan, &reports),
        desired: request.desired,
        applied,
    };
    store.record(&revision, &request.desired_state)?;
    Ok(revision)
}

/// The hash that identifies a policy in the history: SHA-256 of its resolution IR.
pub fn policy_hash(program: &aptc_compiler::ir::Program) -> String {
    crate::source::sha256(&program.to_json())
}
