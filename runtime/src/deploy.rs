//! The steps of a deploy: plan against what the last revision left applied, then apply with a
//! driver and record the revision ([`crate::deployer`] runs them in order for the CLI).
//!
//! ```text
//! desired units ──plan against── last revision's `applied` ──> Plan
//! Plan ──driver (parallel, dependencies first)──> reports ──> Revision (recorded) + new `applied`
//! ```
//!
//! A plan with no action is recorded too (the CLI does so unless it is a dry run): the history
//! says who deployed what and when, changes or not.
//!
//! Before applying, [`refusals`] checks that the deploying user may make every change of the plan
//! (docs/language.md §11.3), with the roles of the policy the last revision deployed.

use std::collections::BTreeMap;
use std::time::Instant;

use aptc_core::ir::Program;

use crate::apply::{Applied, Progress, applied_after, execute};
use crate::cancel::Cancel;
use crate::driver::Driver;
use crate::plan::{ClaimEnds, Plan, Unit, plan};
use crate::store::{Cause, Journal, Location, Revision, Store, action_records, now_rfc3339};
use aptc_core::access::{Access, Role};

/// A deploy that cannot start or be recorded (an action that fails is not this: it is recorded
/// in the revision).
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The revision store cannot be opened, read or written.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The store keeps another target's revisions: planning against them would be wrong.
    #[error(
        "{store} holds the revisions of `{found}`, not of `{target}`: deploy to that target, or keep another state \
(--state) for this one"
    )]
    OtherTarget { store: Box<Location>, found: String, target: String },
    /// The store belongs to another policy (its recorded root): planning this policy against its
    /// revisions would delete what that policy deployed.
    #[error(
        "{store} belongs to the policy at {}, not to the policy at {}: deploy that policy, or, if this store is meant \
(the policy moved), give it explicitly with --state (or APTC_STATE)",
        recorded.display(),
        root.display()
    )]
    OtherPolicy { store: Box<Location>, recorded: std::path::PathBuf, root: std::path::PathBuf },
    /// The driver cannot carry the plan out (a tool missing, a cluster not answering).
    #[error(transparent)]
    Driver(Box<crate::driver::DriverError>),
    /// `--out` names a render directory, which a cluster target has no use for.
    #[error("--out is where the render target writes: it cannot go with --target cluster")]
    OutWithCluster,
    /// A rollback with no store to roll back in.
    #[error("there are no revisions: {store} does not exist")]
    NoRevisions { store: Location },
    /// A rollback to a revision the store does not have (`last`: its last one).
    #[error(
        "there is no revision {number} in {store} (the last is {}; see `aptc history`)",
        last.map_or("none".to_string(), |n| n.to_string())
    )]
    NoSuchRevision { store: Location, number: u64, last: Option<u64> },
    /// Another deploy recorded a revision between this plan and its apply.
    #[error("{store} changed since the plan was made (revision {next} is next, not {planned}); plan again")]
    Stale { store: Location, next: u64, planned: u64 },
}

impl From<crate::driver::DriverError> for DeployError {
    fn from(error: crate::driver::DriverError) -> DeployError {
        DeployError::Driver(Box::new(error))
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
    /// The policy the last revision deployed (`None`: no revision, or one recorded without it).
    pub last_program: Option<Program>,
    /// A revision a stopped deploy left unrecorded, recorded now (see [`crate::store`]'s journal).
    pub recovered: Option<Revision>,
    /// What comparing the target with the last revision found (`Refresh::Drift` with a last
    /// revision only), for the caller to keep ([`crate::store::Store::record_drift`]).
    pub drift: Option<Vec<crate::drift::Drift>>,
}

/// How much of the target a plan looks at, beyond the last revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refresh {
    /// Trust the last revision: the target is not asked (a cluster's answers are slow).
    No,
    /// Ask whether each applied unit is still there (a unit gone is created again).
    Presence,
    /// Also compare each applied unit with what was applied (`--refresh`): a unit changed on the
    /// target by hand is applied again, its action saying so.
    Drift,
}

/// Plans `desired` against what the store's last revision left applied (nothing without a store
/// or a revision), looking at the target as `refresh` says; `claims` (see [`plan`]) keeps what
/// failed claims need. A store whose revisions went to another target is refused.
pub fn prepare(
    store: Option<&dyn Store>,
    driver: &dyn Driver,
    desired: &BTreeMap<String, Unit>,
    claims: Option<&ClaimEnds>,
    refresh: Refresh,
) -> Result<Prepared, DeployError> {
    // A deploy that was killed left a journal: record what it did before planning on from it.
    let recovered = match store {
        Some(store) if store.is_writable() => store.recover()?,
        _ => None,
    };
    let last = match store {
        Some(store) => store.last()?,
        None => None,
    };
    if let (Some(store), Some(last)) = (store, &last)
        && last.target != driver.target()
    {
        return Err(DeployError::OtherTarget {
            store: Box::new(store.location().clone()),
            found: last.target.clone(),
            target: driver.target(),
        });
    }
    let applied = last.as_ref().map(|r| r.applied.clone()).unwrap_or_default();
    let current: BTreeMap<String, Unit> = applied.iter().map(|(k, a)| (k.clone(), a.unit.clone())).collect();
    let (plan, drift) = match refresh {
        Refresh::No => (plan(&current, desired, claims, &|_| true), None),
        Refresh::Presence => (plan(&current, desired, claims, &|unit| driver.is_present(unit)), None),
        Refresh::Drift => {
            let drift = crate::drift::detect(&applied, driver);
            let drifted = crate::drift::Drifted { driver, keys: drift.iter().map(|d| d.key.clone()).collect() };
            let mut plan = plan(&current, desired, claims, &|unit| drifted.is_present(unit));
            crate::drift::explain(&mut plan, &drift);
            (plan, last.is_some().then_some(drift))
        }
    };
    let last_program = match (store, &last) {
        (Some(store), Some(last)) => store.program(last.number)?,
        _ => None,
    };
    Ok(Prepared {
        revision: last.as_ref().map_or(1, |r| r.number + 1),
        previous: last.map(|r| r.number),
        applied,
        plan,
        last_program,
        recovered,
        drift,
    })
}

/// Who, why and what: the parts of a revision that do not come from applying.
#[derive(Clone, Debug)]
pub struct Request {
    pub user: String,
    pub cause: Cause,
    /// `sha256:` of the policy (see [`policy_hash`]).
    pub policy: String,
    /// The policy deployed, kept with the revision (the next deploy's roles come from it); `None`
    /// when unknown (a rollback to a revision recorded without it).
    pub program: Option<Program>,
    pub desired: BTreeMap<String, Unit>,
    /// How the policy's claims ended ([`ClaimEnds`]); `None` for a rollback (a revision's units).
    pub claims: Option<ClaimEnds>,
    /// The full desired state, kept with the revision (shared with the journal, not copied: at
    /// 10,000 claims a copy was a fifth of the controller's peak memory).
    pub desired_state: std::sync::Arc<serde_json::Value>,
    /// At most this many actions at once.
    pub parallel: usize,
}

/// Applies a prepared plan and records the revision (also when actions failed, or `cancel` stopped
/// it: it says exactly what was done).
pub fn apply(
    store: &dyn Store,
    driver: &dyn Driver,
    prepared: Prepared,
    request: &Request,
    progress: &dyn Progress,
    cancel: &Cancel,
) -> Result<Revision, DeployError> {
    let next = store.next_number()?;
    if next != prepared.revision {
        return Err(DeployError::Stale { store: store.location().clone(), next, planned: prepared.revision });
    }
    let started = Instant::now();
    let mut revision = Revision {
        number: prepared.revision,
        time: now_rfc3339(),
        user: request.user.clone(),
        cause: request.cause.clone(),
        policy: request.policy.clone(),
        target: driver.target(),
        duration_ms: 0,
        actions: Vec::new(),
        // What failed claims keep stays desired: a rollback to this revision keeps it too.
        desired: request
            .desired
            .iter()
            .map(|(key, unit)| (key.clone(), unit.clone()))
            .chain(prepared.plan.kept.iter().map(|k| (k.unit.key.clone(), k.unit.clone())))
            .collect(),
        applied: prepared.applied.clone(),
        kept: prepared.plan.kept.iter().map(crate::store::KeptRecord::of).collect(),
    };
    store.begin(&Journal {
        revision: revision.clone(),
        plan: prepared.plan.clone(),
        desired_state: request.desired_state.clone(),
        program: request.program.as_ref().map(Program::to_json),
    })?;
    let journaled = started.elapsed();
    let journaling = Journaling { store, revision: prepared.revision, inner: progress };
    let reports = execute(&prepared.plan, driver, prepared.revision, request.parallel, &journaling, cancel);
    let mut applied = applied_after(&prepared.applied, &prepared.plan, &reports, prepared.revision);
    crate::drift::record_fingerprints(&mut applied, driver, prepared.revision);
    revision.duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    revision.actions = action_records(&prepared.plan, &reports);
    revision.applied = applied;
    let executed = started.elapsed();
    store.record_with_program(&revision, &request.desired_state, request.program.as_ref())?;
    tracing::debug!(
        revision = revision.number,
        actions = revision.actions.len(),
        journal_ms = journaled.as_millis() as u64,
        actions_ms = (executed - journaled).as_millis() as u64,
        record_ms = (started.elapsed() - executed).as_millis() as u64,
        "applied"
    );
    Ok(revision)
}

/// Journals each action's report as it ends (so a killed deploy loses nothing), then tells the
/// caller's progress.
struct Journaling<'a> {
    store: &'a dyn Store,
    revision: u64,
    inner: &'a dyn Progress,
}

impl Progress for Journaling<'_> {
    fn started(&self, index: usize, action: &crate::plan::Action) {
        self.inner.started(index, action);
    }

    fn finished(&self, index: usize, action: &crate::plan::Action, report: &crate::apply::ActionReport) {
        if let Err(error) = self.store.journal_report(self.revision, index, report) {
            tracing::error!(%error, instance = %action.unit.key, "journaling an action's outcome failed");
        }
        self.inner.finished(index, action, report);
    }
}

/// The changes of `prepared`'s plan that `user` may not make, one line each (empty: all allowed),
/// by docs/language.md §11.3. `policy` is the policy being deployed.
///
/// Roles come from the policy of the last revision (a change cannot grant itself the rights it
/// needs); without one (the first deploy, or a revision recorded before policies were kept), from
/// `policy`. A policy without grants allows everything. An action on an instance is allowed when
/// the user may manage (`namespace_admin`, or `domain_admin`) the namespace of the instance's
/// contract, or when the action is due to claims alone: the contract and its service are the same
/// in both policies, and every claim the instance gains or loses (all of them for a create or a
/// delete; for an update that changes only its claims, those added or removed) was added, changed
/// or removed by this policy, in a namespace where the user may manage claims (`consumer` or
/// more).
pub fn refusals(prepared: &Prepared, policy: Option<&Program>, user: &str) -> Vec<String> {
    let Some(roles_from) = prepared.last_program.as_ref().or(policy) else { return Vec::new() };
    let access = Access::new(roles_from);
    if !access.enabled() {
        return Vec::new();
    }
    let which = match (&prepared.last_program, prepared.previous) {
        (Some(_), Some(n)) => format!("the policy of revision {n}"),
        _ => "the policy".to_string(),
    };
    let Some(subject) = access.user(user) else {
        return vec![format!(
            "`{user}` is not a user of {which}, which grants roles: only its users may deploy (--as USER or APTC_USER)"
        )];
    };
    let old = prepared.last_program.as_ref();
    // Every change to the policy, not only those that move instances (§11.3): a grant, a user or
    // a rule that matches nothing yet would otherwise be recorded unchecked, and the next deploy
    // takes its roles from it.
    let mut out: Vec<String> = match (old, policy) {
        (Some(old), Some(new)) => aptc_core::changes::refusals(old, new, user)
            .into_iter()
            .map(|refusal| format!("user `{user}` {refusal}"))
            .collect(),
        _ => Vec::new(),
    };
    for action in &prepared.plan.actions {
        let unit = &action.unit;
        let namespace = unit.contract.split('.').next().unwrap_or_default();
        if access.may_manage(&subject, namespace) {
            continue;
        }
        let claims = claims_alone(old, policy, action, &prepared.applied);
        if !claims.is_empty() && claims.iter().all(|c| access.may_manage_claims(&subject, claim_namespace(c))) {
            continue;
        }
        let needed =
            if namespace == aptc_core::ir::SYSTEM_NAMESPACE { Role::DomainAdmin } else { Role::NamespaceAdmin };
        let has = access.role(&subject, namespace).map_or("none", Role::name);
        out.push(format!(
            "user `{user}` may not {} instance {} ({}): namespace `{namespace}` of contract {} needs {} (their role \
there: {has})",
            action.op.verb(),
            unit.name,
            unit.key,
            unit.contract,
            needed.name()
        ));
    }
    out
}

/// The claims an action is due to alone, as [`refusals`] says; empty when it is not due to claims
/// alone.
fn claims_alone(
    old: Option<&Program>,
    new: Option<&Program>,
    action: &crate::plan::Action,
    applied: &BTreeMap<String, Applied>,
) -> Vec<String> {
    let (Some(old), Some(new)) = (old, new) else { return Vec::new() };
    let unit = &action.unit;
    if old.contracts.get(&unit.contract) != new.contracts.get(&unit.contract)
        || old.services.get(&unit.service) != new.services.get(&unit.service)
    {
        return Vec::new();
    }
    let touched: Vec<String> = match action.op {
        crate::plan::Op::Create | crate::plan::Op::Delete => unit.claims.clone(),
        crate::plan::Op::Update => {
            let Some(before) = applied.get(&unit.key) else { return Vec::new() };
            if before.unit.changes_to(unit) != ["claims"] {
                return Vec::new();
            }
            let gained = unit.claims.iter().filter(|c| !before.unit.claims.contains(c));
            let lost = before.unit.claims.iter().filter(|c| !unit.claims.contains(c));
            gained.chain(lost).cloned().collect()
        }
    };
    let claim = |program: &Program, id: &str| {
        program
            .claims
            .iter()
            .find(|c| c.id() == id)
            .map(|c| (c.namespace.clone(), c.consumer.clone(), c.contract.clone(), c.labels.clone()))
    };
    if touched.iter().any(|id| claim(old, id) == claim(new, id)) {
        return Vec::new();
    }
    touched
}

/// The namespace of a claim id (`namespace.name`).
fn claim_namespace(id: &str) -> &str {
    id.split('.').next().unwrap_or_default()
}

/// What a plan would delete when it deletes more than half of the deployed instances, or all of
/// them (a policy read from the wrong directory, a glob that matched nothing, a claims file
/// emptied by mistake): one line per instance, for the caller to refuse unless told it is meant
/// (`--allow-mass-delete`). Empty when the plan deletes less.
pub fn mass_delete(prepared: &Prepared) -> Vec<String> {
    let deployed = prepared.applied.len();
    let deletes: Vec<&crate::plan::Action> =
        prepared.plan.actions.iter().filter(|a| a.op == crate::plan::Op::Delete).collect();
    if deletes.is_empty() || (deletes.len() < deployed && deletes.len() * 2 <= deployed) {
        return Vec::new();
    }
    deletes.iter().map(|a| format!("{} ({}) in {}: {}", a.unit.name, a.unit.key, a.unit.place(), a.why)).collect()
}

/// The hash that identifies a policy in the history: SHA-256 of its resolution IR.
pub fn policy_hash(program: &aptc_core::ir::Program) -> String {
    aptc_core::digest::sha256(&program.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::units;
    use crate::test_policy::compile;
    use aptc_core::resolve::resolve;

    const SYSTEM_APT: &str = r#"namespace system

team platform_team
team web_team
user "pat" {
    team platform_team
}
user "wendy" {
    team web_team
}
cluster local {}
rule everywhere {
    place on local
}
grant consumer on platform
"#;

    const PLATFORM_APT: &str = r#"namespace platform owned_by platform_team

service cache {
    component server chart "oci://charts.example.com/cache"
}

contract cache {
    context all {
        use cache
    }
}
"#;

    fn policy(web_claims: &str, platform: &str) -> Program {
        let web = format!("namespace web owned_by web_team\n\n{web_claims}");
        compile(&[("system.apt", SYSTEM_APT), ("platform.apt", platform), ("web.apt", &web)])
    }

    /// Plans `new` against what deploying `old` left, with `old` as the last revision's policy.
    fn prepared(old: Option<&Program>, new: &Program) -> Prepared {
        let applied: BTreeMap<String, Applied> = old
            .map(|p| units(&resolve(p), &crate::secrets::Secrets::local()))
            .unwrap_or_default()
            .into_iter()
            .map(|(k, unit)| (k, Applied { revision: 1, unit, fingerprint: None }))
            .collect();
        let current = applied.iter().map(|(k, a)| (k.clone(), a.unit.clone())).collect();
        Prepared {
            revision: 2,
            previous: old.map(|_| 1),
            plan: plan(&current, &units(&resolve(new), &crate::secrets::Secrets::local()), None, &|_| true),
            applied,
            last_program: old.cloned(),
            recovered: None,
            drift: None,
        }
    }

    const CLAIM: &str = "claim wendy_cache {\n    user \"wendy\"\n    contract platform.cache\n}\n";

    #[test]
    fn a_consumer_may_add_and_remove_claims_but_not_change_the_service() {
        let before = policy("", PLATFORM_APT);
        let after = policy(CLAIM, PLATFORM_APT);
        let add = prepared(Some(&before), &after);
        assert_eq!(add.plan.actions.len(), 1);
        assert!(refusals(&add, Some(&after), "wendy").is_empty(), "her claim alone creates the instance");
        // Pat administers platform, where the instance is; but the claim is web's, where pat has
        // no role: a change to the policy he may not make (§11.3).
        let pat = refusals(&add, Some(&after), "pat");
        assert!(pat.iter().any(|r| r.contains("may not add claim `web.wendy_cache`")), "{pat:?}");
        let remove = prepared(Some(&after), &before);
        assert!(refusals(&remove, Some(&before), "wendy").is_empty());

        // Changing the contract needs platform's administrator, even when the new policy would
        // make wendy's team its owner.
        let changed_platform =
            PLATFORM_APT.replace("owned_by platform_team", "owned_by web_team").replace("context all", "context every");
        let changed = policy(CLAIM, &changed_platform);
        let change = prepared(Some(&after), &changed);
        assert!(!change.plan.is_empty());
        let refused = refusals(&change, Some(&changed), "wendy");
        // The policy changes (the owner, the contract) and each instance action they cause.
        assert!(
            refused.iter().all(|r| r.contains("namespace `platform`")
                && r.contains("needs namespace_admin (their role there: consumer)")),
            "{refused:?}"
        );
        assert!(refused.iter().any(|r| r.contains("may not change contract `platform.cache`")), "{refused:?}");
        assert!(!refused.is_empty());
        assert!(refusals(&change, Some(&changed), "pat").is_empty());
    }

    #[test]
    fn the_first_deploy_uses_the_new_policy_and_unknown_users_are_refused() {
        let first = policy(CLAIM, PLATFORM_APT);
        let prepared = prepared(None, &first);
        let refused = refusals(&prepared, Some(&first), "wendy");
        assert_eq!(refused.len(), 1, "without an old policy nothing is due to claims alone: {refused:?}");
        assert!(refusals(&prepared, Some(&first), "pat").is_empty());
        let stranger = refusals(&prepared, Some(&first), "mallory");
        assert_eq!(stranger.len(), 1);
        assert!(stranger[0].contains("`mallory` is not a user of the policy"), "{stranger:?}");
        // Without grants, access control is off.
        let open = compile(&[
            ("system.apt", &SYSTEM_APT.replace("grant consumer on platform\n", "")),
            ("platform.apt", PLATFORM_APT),
            ("web.apt", &format!("namespace web\n\n{CLAIM}")),
        ]);
        let open_prepared = super::tests::prepared(None, &open);
        assert!(refusals(&open_prepared, Some(&open), "mallory").is_empty());
    }

    #[test]
    fn claim_ends_tell_faults_from_decisions() {
        use crate::plan::{ClaimEnd, ClaimEnds};
        let ends = |program: &Program| ClaimEnds::of(program, &resolve(program)).0["web.wendy_cache"].clone();
        let good = policy(CLAIM, PLATFORM_APT);
        assert_eq!(ends(&good), ClaimEnd::Resolved);
        // No rule places it: a fault of the policy, whose instances are kept.
        let mut unplaced = good.clone();
        unplaced.rules.clear();
        assert!(matches!(ends(&unplaced), ClaimEnd::Failed(_)), "{:?}", ends(&unplaced));
        // Its user is gone, or may no longer consume: decisions, whose instances go.
        let mut gone = good.clone();
        gone.claims[0].consumer = aptc_core::ir::Consumer::User("nobody".into());
        assert!(matches!(ends(&gone), ClaimEnd::Refused(_)), "{:?}", ends(&gone));
        let mut revoked = good.clone();
        for grant in &mut revoked.grants {
            grant.namespaces = Some(vec!["web".into()]);
        }
        assert!(matches!(ends(&revoked), ClaimEnd::Refused(_)), "{:?}", ends(&revoked));
    }
}
