//! The deploy sequence, written once for `aptc deploy`, `aptc rollback` and `aptc watch`:
//! choose the driver → open the store → [`prepare`] (recover, plan) → refuse what the user may not
//! do → preflight → confirm → [`apply`] (journal, execute, record).
//!
//! [`Deployer::deploy`] and [`Deployer::rollback`] are attended: the caller's [`Supervisor`] is
//! shown the plan and asked to confirm. [`Reconciler::reconcile`] is one unattended step of a
//! watch loop, like a kube-rs controller's `reconcile`: given the current policy (the caller
//! lowers it again when its files change; the runtime never depends on the compiler), it compares
//! the target with the last revision when that is due, plans when the policy changed or drift was
//! found, applies under `fix`, and says what it did and when to run again (`requeue_after`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use aptc_core::ir::{Cluster, Program};
use aptc_core::resolve::{DeployedName, DeployedNames};

use crate::apply::{Outcome, Progress, Quiet};
use crate::cancel::Cancel;
use crate::cluster::{self, ClusterDriver};
use crate::credentials::Home;
use crate::deploy::{DeployError, Prepared, Refresh, Request, apply, mass_delete, prepare, refusals};
use crate::drift::{Drift, Drifted, detect, explain};
use crate::driver::{Driver, DriverError};
use crate::helm::{Helm, HelmError};
use crate::plan::refresh_digests;
use crate::release::Releases;
use crate::render::RenderDriver;
use crate::retry::Backoff;
use crate::secrets::Secrets;
use crate::store::{self, Cause, DriftCause, DriftRecord, Journal, Location, Revision, Store, now_rfc3339};

/// Where to apply, as the user chose it (`--target`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetChoice {
    /// The declared clusters when one is configured and answers, else rendering.
    Auto,
    /// Into a directory (the embedded default; for GitOps).
    Render,
    /// The clusters the policy declares, through their kubeconfig; an error when none answers.
    Cluster,
}

/// What choosing a driver needs besides the policy: the user's choice and where the tools are.
#[derive(Clone, Debug)]
pub struct Targets {
    /// `--target`.
    pub choice: TargetChoice,
    /// `--out`: where to render (implies rendering under `Auto`).
    pub out: Option<PathBuf>,
    /// Where to render without `--out`.
    pub default_out: PathBuf,
    /// `--helm`: the Helm binary, else it is looked for ([`Helm::locate`]).
    pub helm: Option<PathBuf>,
    /// The aptc executable, which Helm runs as the post-renderer (`Err`: it cannot be found, which
    /// matters only for chart instances on clusters).
    pub post_renderer: Result<PathBuf, HelmError>,
    /// Where the Secrets of `kubeconfig secret` clusters are read and what `kubeconfig
    /// in_cluster` reaches (docs/language.md §8.1): the controller's cluster and namespace, or by
    /// default the ambient kubeconfig's current context and its namespace.
    pub home: Home,
}

impl Targets {
    /// Where secrets are read for these targets: `secret_k8s` from the Secrets of the home, where
    /// the kubeconfigs of `kubeconfig secret` are read too (docs/language.md §5.9, §8.1).
    pub fn secrets(&self) -> Secrets {
        Secrets::new(self.home.clone())
    }

    /// The driver for `program`'s clusters as the choice says, and a line saying where it applies
    /// and, under `Auto`, why.
    pub fn driver(&self, program: Option<&Program>) -> Result<(Box<dyn Driver>, String), DeployError> {
        let helm = || Helm::locate(self.helm.as_deref());
        let render = |why: &str| -> (Box<dyn Driver>, String) {
            let driver = RenderDriver::new(self.out.as_deref().unwrap_or(&self.default_out), helm());
            let line = format!("{}{why}", driver.describe());
            (Box::new(driver), line)
        };
        let choice =
            if self.out.is_some() && self.choice == TargetChoice::Auto { TargetChoice::Render } else { self.choice };
        if choice == TargetChoice::Render {
            return Ok(render(""));
        }
        if self.out.is_some() {
            return Err(DeployError::OutWithCluster);
        }
        let releases = helm().and_then(|helm| Releases::new(helm, self.post_renderer.clone()?));
        let connections = program.map(cluster::connections).unwrap_or_default();
        let credentials = program.map(cluster::credentials).unwrap_or_default();
        let driver = ClusterDriver::new(connections, releases).with_credentials(credentials, self.home.clone());
        if choice == TargetChoice::Auto {
            if !driver.is_configured() {
                return Ok(render(
                    " (the embedded default: no cluster is configured — no kubeconfig in $KUBECONFIG, ~/.kube/config \
or the policy's clusters; --target cluster requires one)",
                ));
            }
            if let Err(error) = driver.probe() {
                return Ok(render(&format!(
                    " (the embedded default: {error}; --target cluster requires the clusters)"
                )));
            }
        }
        let line = driver.describe();
        Ok((Box::new(driver), line))
    }
}

/// How one attended deploy runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Plan only: nothing applied, nothing recorded (the store is only read).
    pub dry_run: bool,
    /// Plan against what the target holds now (drift), not only the last revision.
    pub refresh: bool,
    /// Apply a plan that deletes more than half of the deployed instances ([`mass_delete`]).
    pub allow_mass_delete: bool,
}

/// The caller of an attended deploy: shown each step, asked before applying.
pub trait Supervisor {
    /// A rollback is about to plan back to `to`.
    fn rolling_back(&mut self, _to: &Revision) {}

    /// The plan is made (on `driver`); `pending` is the journal of a deploy that has not finished
    /// (another aptc runs, or one was killed and this run only reads the store).
    fn planned(&mut self, _prepared: &Prepared, _pending: Option<&Journal>, _driver: &dyn Driver) {}

    /// Whether to apply: asked once the plan has changes the user may make and the driver is
    /// ready. `false` applies and records nothing.
    fn confirm(&mut self, _prepared: &Prepared) -> bool {
        true
    }

    /// Applying starts now; what to tell of each action.
    fn applying(&mut self, _prepared: &Prepared) -> &dyn Progress {
        &Quiet
    }
}

/// How an attended deploy ended, for the caller to report.
#[derive(Debug)]
pub enum Ended {
    /// Nothing to change: `unchanged` instances as revision `previous` left them; recorded as
    /// `revision` (the history says who deployed what, changes or not) unless a dry run.
    NoChanges { unchanged: usize, previous: Option<u64>, revision: Option<Revision> },
    /// The user may not make these changes (one line each); nothing applied or recorded.
    Refused { user: String, refusals: Vec<String> },
    /// The plan deletes more than half of the `deployed` instances: these (one line each), which
    /// only `allow_mass_delete` applies; nothing applied or recorded.
    MassDelete { deletes: Vec<String>, deployed: usize },
    /// A dry run with changes: nothing applied or recorded.
    DryRun,
    /// The supervisor said no.
    Declined,
    /// Applied and recorded (actions may have failed: the revision says).
    Applied(Revision),
    /// Cancelled partway: what ran finished and is recorded; `not_started` actions are
    /// [`Outcome::Interrupted`] (the next deploy does them).
    Interrupted { revision: Revision, not_started: usize },
}

/// An attended deploy's end and where it applied.
#[derive(Debug)]
pub struct Deployment {
    /// Where it applied, and for `auto` why ([`Targets::driver`]).
    pub target: String,
    pub ended: Ended,
}

/// Runs deploys and rollbacks against one store, on the target the user chose.
pub struct Deployer {
    state: Location,
    targets: Targets,
    cancel: Cancel,
    /// The policy root deployed, and whether the store was given explicitly (see
    /// [`Deployer::with_policy_root`]).
    root: Option<(PathBuf, bool)>,
}

impl Deployer {
    /// Deploys keep their revisions in `state`, apply where `targets` says, and stop cleanly once
    /// `cancel` is cancelled.
    pub fn new(state: &Location, targets: Targets, cancel: Cancel) -> Deployer {
        Deployer { state: state.clone(), targets, cancel, root: None }
    }

    /// The store belongs to the policy at `root`: a store that records another root is refused
    /// (the state belongs to the policy, not to where aptc runs), unless it was given explicitly
    /// (`explicit`: `--state` or `APTC_STATE`); a store that records none is given `root` when
    /// first written.
    pub fn with_policy_root(mut self, root: PathBuf, explicit: bool) -> Deployer {
        self.root = Some((root, explicit));
        self
    }

    /// Refuses a store of another policy root; records the root in a store without one.
    fn claim(&self, store: &dyn Store) -> Result<(), DeployError> {
        let Some((root, explicit)) = &self.root else { return Ok(()) };
        match store.policy_root()? {
            Some(recorded) if recorded != *root && !explicit => {
                Err(DeployError::OtherPolicy { store: Box::new(self.state.clone()), recorded, root: root.clone() })
            }
            None if store.is_writable() => Ok(store.set_policy_root(root)?),
            _ => Ok(()),
        }
    }

    /// Where the store is.
    pub fn state(&self) -> &Location {
        &self.state
    }

    /// The names the last revision's instances were deployed with: resolving with them
    /// ([`aptc_core::resolve::resolve_keeping`]) keeps every running instance's name.
    pub fn deployed_names(&self) -> Result<DeployedNames, DeployError> {
        let Some(store) = store::open_read(&self.state)? else { return Ok(DeployedNames::new()) };
        let Some(last) = store.last()? else { return Ok(DeployedNames::new()) };
        Ok(last
            .applied
            .into_iter()
            .map(|(key, applied)| {
                let unit = applied.unit;
                let name = DeployedName {
                    name: unit.name,
                    id: unit.id,
                    cluster: unit.cluster,
                    k8s_namespace: unit.k8s_namespace,
                };
                (key, name)
            })
            .collect())
    }

    /// Plans `request` against the last revision, refuses what its user may not do, confirms with
    /// `supervisor`, applies and records.
    pub fn deploy(
        &self,
        request: Request,
        options: Options,
        supervisor: &mut dyn Supervisor,
    ) -> Result<Deployment, DeployError> {
        let store = if options.dry_run { store::open_read(&self.state)? } else { Some(store::open(&self.state)?) };
        if let Some(store) = &store {
            self.claim(store.as_ref())?;
        }
        let (driver, target) = self.targets.driver(request.program.as_ref())?;
        let driver = driver.as_ref();
        let refresh = match (options.refresh, driver.is_local()) {
            (true, _) => Refresh::Drift,
            (false, true) => Refresh::Presence,
            (false, false) => Refresh::No,
        };
        let prepared = prepare(store.as_deref(), driver, &request.desired, request.claims.as_ref(), refresh)?;
        if let (Some(drift), Some(revision)) = (&prepared.drift, prepared.previous) {
            let cause = if options.dry_run { DriftCause::DryRun } else { DriftCause::Deploy };
            self.keep_drift(store.as_deref(), drift_record(Some(request.user.clone()), cause, revision, driver, drift));
        }
        supervisor.planned(&prepared, pending(&prepared, store.as_deref())?.as_ref(), driver);
        let ended = |ended| Ok(Deployment { target: target.clone(), ended });
        // Checked before anything else, a plan without actions included: a policy change that
        // moves no instance is still recorded, and the next deploy takes its roles from it.
        let refused = refusals(&prepared, request.program.as_ref(), &request.user);
        if !refused.is_empty() {
            if let Some(store) = store.filter(|s| s.created()) {
                // The store this run created for a first deploy holds nothing: leave no trace.
                if let Err(error) = store.discard() {
                    tracing::warn!(%error, "removing the empty store of a refused first deploy");
                }
            }
            return ended(Ended::Refused { user: request.user, refusals: refused });
        }
        if prepared.plan.is_empty() {
            let (unchanged, previous) = (prepared.plan.unchanged.len(), prepared.previous);
            let revision = match store.filter(|_| !options.dry_run) {
                Some(store) => Some(apply(store.as_ref(), driver, prepared, &request, &Quiet, &self.cancel)?),
                None => None,
            };
            return ended(Ended::NoChanges { unchanged, previous, revision });
        }
        let deletes = mass_delete(&prepared);
        if !deletes.is_empty() && !options.allow_mass_delete {
            return ended(Ended::MassDelete { deletes, deployed: prepared.applied.len() });
        }
        let Some(store) = store.filter(|_| !options.dry_run) else { return ended(Ended::DryRun) };
        driver.preflight(&prepared.plan)?;
        if !supervisor.confirm(&prepared) {
            return ended(Ended::Declined);
        }
        let progress = supervisor.applying(&prepared);
        let revision = apply(store.as_ref(), driver, prepared, &request, progress, &self.cancel)?;
        if self.cancel.is_cancelled() {
            let not_started = revision.actions.iter().filter(|a| a.report.outcome == Outcome::Interrupted).count();
            return ended(Ended::Interrupted { revision, not_started });
        }
        ended(Ended::Applied(revision))
    }

    /// Keeps a drift check in the store (`store` if it was opened for writing, else the store
    /// opened for writing just for this, as after a dry run). Keeping it is not the command's
    /// purpose: when the store is busy (another deploy) it is only logged.
    fn keep_drift(&self, store: Option<&dyn Store>, record: DriftRecord) {
        let kept = match store.filter(|s| s.is_writable()) {
            Some(store) => store.record_drift(&record),
            None => store::open(&self.state).and_then(|store| store.record_drift(&record)),
        };
        if let Err(error) = kept {
            tracing::warn!(%error, "the drift check was not kept in the store");
        }
    }

    /// Deploys again the desired units of revision `to` (their charts and manifests read from
    /// disk as they are now), as `user`.
    pub fn rollback(
        &self,
        to: u64,
        user: String,
        parallel: usize,
        options: Options,
        supervisor: &mut dyn Supervisor,
    ) -> Result<Deployment, DeployError> {
        let (revision, desired_state, program) = {
            let store =
                store::open_read(&self.state)?.ok_or_else(|| DeployError::NoRevisions { store: self.state.clone() })?;
            let Some(revision) = store.get(to)? else {
                let last = store.last()?.map(|r| r.number);
                return Err(DeployError::NoSuchRevision { store: self.state.clone(), number: to, last });
            };
            let desired_state = store.desired_state(to)?.unwrap_or(serde_json::Value::Null);
            (revision, desired_state, store.program(to)?)
        };
        supervisor.rolling_back(&revision);
        let mut desired = revision.desired.clone();
        refresh_digests(&mut desired, &self.targets.secrets());
        let request = Request {
            user,
            cause: Cause::Rollback { to: revision.number },
            policy: revision.policy.clone(),
            program,
            desired,
            claims: None,
            desired_state: desired_state.into(),
            parallel,
        };
        self.deploy(request, options, supervisor)
    }
}

/// A drift check of `driver`'s target against revision `revision`, made now.
fn drift_record(
    user: Option<String>,
    cause: DriftCause,
    revision: u64,
    driver: &dyn Driver,
    drift: &[Drift],
) -> DriftRecord {
    DriftRecord { time: now_rfc3339(), user, cause, revision, target: driver.target(), drift: drift.to_vec() }
}

/// The journal of a deploy that has not finished, when `prepare` did not recover it (the store is
/// only read, or another aptc is deploying).
fn pending(prepared: &Prepared, store: Option<&dyn Store>) -> Result<Option<Journal>, DeployError> {
    if prepared.recovered.is_some() {
        return Ok(None);
    }
    Ok(store.map(|s| s.pending()).transpose()?.flatten())
}

/// The policy a [`Reconciler`] enforces: what a deploy of it would send.
pub type Desired = Request;

/// The unattended deploy loop's state between steps (`aptc watch`).
pub struct Reconciler {
    deployer: Deployer,
    driver: Box<dyn Driver>,
    /// The clusters `driver` was chosen for; a policy declaring others switches drivers.
    clusters: Option<BTreeMap<String, Cluster>>,
    /// Apply policy changes and repair drift; without it, only report.
    fix: bool,
    /// How often the target is compared with the last revision.
    interval: Duration,
    next_drift_check: Instant,
    /// The policy last planned (its hash), so an unchanged policy is not planned again.
    planned_policy: Option<String>,
    /// The drift last reported, so that unchanged drift is not reported again.
    reported: BTreeSet<(String, String)>,
    /// Units whose repair keeps failing, by key: their drift is repaired again only when their
    /// backoff has passed.
    failing: BTreeMap<String, Failing>,
    /// Whether changes were checked where they were made ([`Reconciler::checked_upstream`]).
    checked_upstream: bool,
}

/// A unit whose last repairs failed.
#[derive(Clone, Debug)]
struct Failing {
    times: u32,
    next: Instant,
}

/// A unit whose repair failed again, and when it is tried next ([`Reconciler::backoff`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackingOff {
    pub key: String,
    pub name: String,
    /// Failures in a row.
    pub failures: u32,
    /// How long until its drift is repaired again.
    pub retry_in: Duration,
    /// Whether the last failure cannot succeed on retry as it is (it is still tried, rarely: the
    /// cluster or someone may have fixed the cause).
    pub for_good: bool,
}

/// What comparing the target with the last revision found.
#[derive(Debug)]
pub enum DriftCheck {
    /// The store cannot be read now (tried again at the next interval).
    Unreadable(DeployError),
    /// No revision yet: nothing to compare.
    NoRevision,
    /// The last revision went to another target: not compared.
    OtherTarget { target: String },
    /// Compared with revision `revision`, which applied `instances` instances; `drift` in key
    /// order; `news` when it differs from what was last reported (or is to be repaired again).
    Compared { revision: u64, instances: usize, drift: Vec<Drift>, news: bool },
}

/// What a plan in a reconcile step led to.
#[derive(Debug)]
pub enum Fix {
    /// Nothing to change.
    UpToDate,
    /// Changes, not applied: reporting only (no `fix`).
    Reported,
    /// The user may not make these changes (one line each).
    Refused(Vec<String>),
    /// The driver cannot apply now (preflight).
    NotReady(DriverError),
    /// Applied and recorded.
    Recorded(Revision),
    /// Applying or recording failed.
    NotRecorded(DeployError),
}

/// A plan a reconcile step made, and what came of it.
#[derive(Debug)]
pub struct Planned {
    /// The plan (drift repairs explained in it).
    pub prepared: Prepared,
    /// A deploy that has not finished (see [`Supervisor::planned`]).
    pub pending: Option<Journal>,
    /// What came of it.
    pub fix: Fix,
}

/// Why a reconcile step could not plan.
#[derive(Debug)]
pub enum NotPlanned {
    /// No policy has loaded yet.
    NoPolicy,
    /// The store cannot be opened now.
    Store(DeployError),
    /// Planning failed (another target's store, …).
    Plan(DeployError),
}

/// What one reconcile step did.
#[derive(Debug)]
pub struct Reconciled {
    /// The policy's clusters changed: the new target line, or why the old driver is kept.
    pub switched: Option<Result<String, DeployError>>,
    /// The comparison with the last revision, when it was due.
    pub drift: Option<DriftCheck>,
    /// The plan, when the policy changed or drift is to be repaired.
    pub planned: Option<Result<Planned, NotPlanned>>,
    /// Units whose repair failed in this step, with when they are tried again.
    pub backing_off: Vec<BackingOff>,
    /// Drifted units not repaired in this step because their backoff has not passed.
    pub waiting: usize,
    /// When to run again at the latest (the next comparison is due then).
    pub requeue_after: Duration,
}

impl Reconciler {
    /// A reconciler for `deployer`'s store and targets, starting on the target chosen for
    /// `program` (the first policy, if it loaded); compares every `interval`.
    pub fn new(
        deployer: Deployer,
        program: Option<&Program>,
        fix: bool,
        interval: Duration,
    ) -> Result<(Reconciler, String), DeployError> {
        let (driver, target) = deployer.targets.driver(program)?;
        let reconciler = Reconciler {
            deployer,
            driver,
            clusters: program.map(|p| p.clusters.clone()),
            fix,
            interval,
            next_drift_check: Instant::now(),
            planned_policy: None,
            reported: BTreeSet::new(),
            failing: BTreeMap::new(),
            checked_upstream: false,
        };
        Ok((reconciler, target))
    }

    /// A reconciler whose policy changes were checked with the identity of whoever made them
    /// before they reached it (aptc's controller: its admission webhook runs the change check of
    /// docs/language.md §11.3 on every bundle with the requester's user name, and the resolver
    /// checks each claim's consumer), so plans are not checked again against
    /// [`Request::user`], which is then the controller's own name. Mass deletes are still refused.
    pub fn checked_upstream(mut self) -> Reconciler {
        self.checked_upstream = true;
        self
    }

    /// The driver it applies with now.
    pub fn driver(&self) -> &dyn Driver {
        self.driver.as_ref()
    }

    /// One step: switch drivers if `desired`'s clusters changed; compare with the last revision if
    /// due; plan if the policy changed since the last plan, or to repair drift under `fix`; apply
    /// under `fix`. `desired` is the policy as last loaded (`None`: none has loaded yet).
    pub fn reconcile(&mut self, desired: Option<&Desired>) -> Reconciled {
        let switched = desired.and_then(|d| self.switch(d.program.as_ref()));
        let mut drift = None;
        let mut repair = Vec::new();
        if Instant::now() >= self.next_drift_check {
            let check = self.check_drift(desired.map(|d| d.user.clone()));
            if let DriftCheck::Compared { drift: found, .. } = &check
                && self.fix
            {
                repair = found.clone();
            }
            drift = Some(check);
            self.next_drift_check = Instant::now() + self.interval;
        }
        // A unit whose repair keeps failing is repaired again only once its backoff has passed.
        let now = Instant::now();
        let before = repair.len();
        repair.retain(|d| self.failing.get(&d.key).is_none_or(|f| now >= f.next));
        let waiting = before - repair.len();
        let changed = desired.is_some_and(|d| self.planned_policy.as_ref() != Some(&d.policy));
        let planned = if changed || !repair.is_empty() {
            let planned = self.plan(desired, &repair);
            if let Some(desired) = desired {
                self.planned_policy = Some(desired.policy.clone());
            }
            Some(planned)
        } else {
            None
        };
        let backing_off = match &planned {
            Some(Ok(Planned { fix: Fix::Recorded(revision), .. })) => self.count_failures(revision),
            _ => Vec::new(),
        };
        let requeue_after = self.next_drift_check.saturating_duration_since(Instant::now());
        Reconciled { switched, drift, planned, requeue_after, backing_off, waiting }
    }

    /// How long a unit whose repair failed `n` times in a row waits before the next: 2 intervals,
    /// doubling up to 64.
    pub fn backoff(&self) -> Backoff {
        Backoff { attempts: u32::MAX, first: self.interval * 2, max: self.interval * 64 }
    }

    /// Counts the failures of `revision`'s actions (a success clears a unit's count), and the
    /// backoff of each unit that failed.
    fn count_failures(&mut self, revision: &Revision) -> Vec<BackingOff> {
        let backoff = self.backoff();
        let mut backing_off = Vec::new();
        for action in &revision.actions {
            if action.report.outcome.succeeded() {
                self.failing.remove(&action.key);
            } else if let Outcome::Failed { retryable, .. } = &action.report.outcome {
                let failing =
                    self.failing.entry(action.key.clone()).or_insert(Failing { times: 0, next: Instant::now() });
                failing.times += 1;
                let retry_in = backoff.ceiling(failing.times);
                failing.next = Instant::now() + retry_in;
                backing_off.push(BackingOff {
                    key: action.key.clone(),
                    name: action.name.clone(),
                    failures: failing.times,
                    retry_in,
                    for_good: !retryable,
                });
            }
        }
        backing_off
    }

    /// Chooses the driver again when the policy's clusters are not those it was chosen for.
    fn switch(&mut self, program: Option<&Program>) -> Option<Result<String, DeployError>> {
        let program = program?;
        // A driver chosen before any policy loaded knows no cluster: the first policy that loads
        // switches it to its clusters (the controller starts so), unless it declares none.
        let known = self.clusters.clone().unwrap_or_default();
        if known == program.clusters {
            self.clusters = Some(known);
            return None;
        }
        self.clusters = Some(program.clusters.clone());
        Some(self.deployer.targets.driver(Some(program)).map(|(driver, target)| {
            self.driver = driver;
            target
        }))
    }

    /// Compares the target with what the last revision applied, and keeps what it found in the
    /// store (as run by `user`, the policy's deploying user when one has loaded).
    fn check_drift(&mut self, user: Option<String>) -> DriftCheck {
        let last = match store::open_read(&self.deployer.state).and_then(|s| s.map(|s| s.last()).transpose()) {
            Ok(last) => last.flatten(),
            Err(error) => return DriftCheck::Unreadable(error.into()),
        };
        let Some(last) = last else { return DriftCheck::NoRevision };
        if last.target != self.driver.target() {
            return DriftCheck::OtherTarget { target: last.target };
        }
        let drift = detect(&last.applied, self.driver.as_ref());
        let record = drift_record(user, DriftCause::Reconcile, last.number, self.driver.as_ref(), &drift);
        self.deployer.keep_drift(None, record);
        let now: BTreeSet<(String, String)> = drift.iter().map(|d| (d.key.clone(), d.kind.describe())).collect();
        let news = now != self.reported || (self.fix && !drift.is_empty());
        self.reported = now;
        DriftCheck::Compared { revision: last.number, instances: last.applied.len(), drift, news }
    }

    /// Plans `desired` against the last revision (the `drift` units counting as absent) and
    /// applies it under `fix`.
    fn plan(&mut self, desired: Option<&Desired>, drift: &[Drift]) -> Result<Planned, NotPlanned> {
        let desired = desired.ok_or(NotPlanned::NoPolicy)?;
        let started = Instant::now();
        let driver = Drifted { driver: self.driver.as_ref(), keys: drift.iter().map(|d| d.key.clone()).collect() };
        let state = &self.deployer.state;
        let store = if self.fix { store::open(state).map(Some) } else { store::open_read(state) }
            .map_err(|e| NotPlanned::Store(e.into()))?;
        if let Some(store) = &store {
            self.deployer.claim(store.as_ref()).map_err(NotPlanned::Plan)?;
        }
        let opened = started.elapsed();
        let mut prepared =
            prepare(store.as_deref(), &driver, &desired.desired, desired.claims.as_ref(), Refresh::Presence)
                .map_err(NotPlanned::Plan)?;
        let pending = pending(&prepared, store.as_deref()).map_err(NotPlanned::Store)?;
        tracing::debug!(
            actions = prepared.plan.actions.len(),
            open_ms = opened.as_millis() as u64,
            prepare_ms = (started.elapsed() - opened).as_millis() as u64,
            "planned"
        );
        explain(&mut prepared.plan, drift);
        let planned = |prepared, fix| Ok(Planned { prepared, pending, fix });
        if prepared.plan.is_empty() {
            return planned(prepared, Fix::UpToDate);
        }
        let Some(store) = store.filter(|_| self.fix) else { return planned(prepared, Fix::Reported) };
        let refused = if self.checked_upstream {
            Vec::new()
        } else {
            refusals(&prepared, desired.program.as_ref(), &desired.user)
        };
        if !refused.is_empty() {
            return planned(prepared, Fix::Refused(refused));
        }
        let deletes = mass_delete(&prepared);
        if !deletes.is_empty() {
            let of = prepared.applied.len();
            let refused = deletes
                .into_iter()
                .map(|d| format!("would delete {d}: more than half of the {of} deployed instances go, which only `aptc deploy --allow-mass-delete` applies"))
                .collect();
            return planned(prepared, Fix::Refused(refused));
        }
        if let Err(error) = driver.preflight(&prepared.plan) {
            return planned(prepared, Fix::NotReady(error));
        }
        let shown = prepared.clone();
        let fix = match apply(store.as_ref(), &driver, prepared, desired, &Quiet, &self.deployer.cancel) {
            Ok(revision) => {
                self.reported.clear();
                Fix::Recorded(revision)
            }
            Err(error) => Fix::NotRecorded(error),
        };
        planned(shown, fix)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::plan::units;
    use crate::test_policy::compile;

    fn deployer(dir: &Path) -> Deployer {
        let targets = Targets {
            choice: TargetChoice::Render,
            out: Some(dir.join("out")),
            default_out: dir.join("unused"),
            helm: None,
            post_renderer: Ok(PathBuf::from("aptc")),
            home: Home::default(),
        };
        Deployer::new(&Location::File(dir.join("state.db")), targets, Cancel::new())
    }

    /// A policy with nothing to deploy, as `ada` deploys it.
    fn request() -> Request {
        request_of(compile(&[("system.apt", "namespace system\n\ncluster local {}\n")]), &DeployedNames::new())
    }

    struct Silent;
    impl Supervisor for Silent {}

    #[test]
    fn a_deploy_without_changes_is_recorded_and_a_dry_run_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let deployer = deployer(dir.path());
        let dry = deployer.deploy(request(), Options { dry_run: true, ..Options::default() }, &mut Silent).unwrap();
        assert!(matches!(dry.ended, Ended::NoChanges { revision: None, previous: None, .. }), "{dry:?}");
        assert!(!dir.path().join("state.db").exists(), "a dry run creates no store");
        let first = deployer.deploy(request(), Options::default(), &mut Silent).unwrap();
        assert!(matches!(&first.ended, Ended::NoChanges { revision: Some(r), .. } if r.number == 1), "{first:?}");
        assert!(first.target.starts_with("rendered to "), "{}", first.target);
        let second = deployer.deploy(request(), Options::default(), &mut Silent).unwrap();
        assert!(matches!(second.ended, Ended::NoChanges { previous: Some(1), .. }), "{second:?}");
    }

    /// A policy in `dir` with two manifests instances, one per claim.
    fn two_configs(dir: &Path) -> Program {
        let policy = dir.join("policy");
        std::fs::create_dir_all(policy.join("k8s")).unwrap();
        let system = "namespace system\n\nteam web_team\nuser \"ada\" {\n    team web_team\n}\ncluster local {}\n\
                      rule everywhere {\n    place on local\n}\ngrant consumer on web\n";
        let web = "namespace web owned_by web_team\n\nlabel k: string = \"\"\n\n\
                   service config {\n    component map manifests \"k8s/*.yaml\"\n}\n\n\
                   contract config {\n    context all {\n        allocate per labels.k\n        use config\n    }\n}\n\n\
                   claim a {\n    user \"ada\"\n    contract config\n    labels { k = \"a\" }\n}\n\
                   claim b {\n    user \"ada\"\n    contract config\n    labels { k = \"b\" }\n}\n";
        let map = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"${instance.name}\"\ndata:\n  k: v\n";
        std::fs::write(policy.join("system.apt"), system).unwrap();
        std::fs::write(policy.join("web.apt"), web).unwrap();
        std::fs::write(policy.join("k8s/map.yaml"), map).unwrap();
        aptc_compiler::host::load_program(&[policy], false).unwrap()
    }

    /// What the CLI asks a deployer for (`src/cli/deploy.rs`), naming instances as `names` say.
    fn request_of(program: Program, names: &DeployedNames) -> Request {
        let state = aptc_core::resolve::resolve_keeping(&program, names);
        Request {
            user: "ada".into(),
            cause: Cause::Deploy { paths: vec![".".into()] },
            policy: crate::deploy::policy_hash(&program),
            desired: units(&state, &crate::secrets::Secrets::local()),
            claims: Some(crate::plan::ClaimEnds::of(&program, &state)),
            desired_state: serde_json::to_value(&state).unwrap().into(),
            program: Some(program),
            parallel: 1,
        }
    }

    #[test]
    fn an_upgrade_renames_nothing_that_runs() {
        let dir = tempfile::tempdir().unwrap();
        let deployer = deployer(dir.path());
        // What an older aptc deployed: the same instances under its own (short) names.
        let legacy: DeployedNames = aptc_core::resolve::resolve(&two_configs(dir.path()))
            .instances
            .into_values()
            .enumerate()
            .map(|(n, i)| {
                let id = format!("{n:010x}");
                let name = DeployedName {
                    name: format!("config-map-{id}"),
                    id,
                    cluster: i.cluster.to_string(),
                    k8s_namespace: i.k8s_namespace.to_string(),
                };
                (i.key, name)
            })
            .collect();
        let old = request_of(two_configs(dir.path()), &legacy);
        let first = deployer.deploy(old, Options::default(), &mut Silent).unwrap();
        assert!(matches!(first.ended, Ended::Applied(_)), "{first:?}");
        let names = deployer.deployed_names().unwrap();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names.iter().all(|(k, n)| n.name.starts_with("config-map-00") && legacy[k].name == n.name),
            "{names:?}"
        );
        // This aptc keeps them: nothing to rename, so nothing to reinstall.
        let again =
            deployer.deploy(request_of(two_configs(dir.path()), &names), Options::default(), &mut Silent).unwrap();
        assert!(matches!(again.ended, Ended::NoChanges { unchanged: 2, .. }), "{again:?}");
        // Without the recorded names, the same policy would replace both.
        let fresh = deployer
            .deploy(
                request_of(two_configs(dir.path()), &DeployedNames::new()),
                Options { dry_run: true, ..Options::default() },
                &mut Silent,
            )
            .unwrap();
        assert!(matches!(fresh.ended, Ended::DryRun), "{fresh:?}");
    }

    #[test]
    fn a_rollback_needs_the_revision() {
        let dir = tempfile::tempdir().unwrap();
        let deployer = deployer(dir.path());
        let none = deployer.rollback(1, "ada".into(), 1, Options::default(), &mut Silent).unwrap_err();
        assert!(
            matches!(none, DeployError::NoRevisions { .. }) && none.to_string().starts_with("there are no revisions")
        );
        deployer.deploy(request(), Options::default(), &mut Silent).unwrap();
        let missing = deployer.rollback(7, "ada".into(), 1, Options::default(), &mut Silent).unwrap_err();
        assert!(missing.to_string().contains("there is no revision 7 in"), "{missing}");
        assert!(missing.to_string().contains("(the last is 1; see `aptc history`)"), "{missing}");
        let back = deployer.rollback(1, "ada".into(), 1, Options::default(), &mut Silent).unwrap();
        assert!(matches!(&back.ended, Ended::NoChanges { revision: Some(r), .. } if r.number == 2), "{back:?}");
    }

    #[test]
    fn a_reconcile_step_plans_a_new_policy_once_and_compares_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let desired = request();
        let interval = Duration::from_secs(60);
        let (mut reconciler, _) =
            Reconciler::new(deployer(dir.path()), desired.program.as_ref(), true, interval).unwrap();
        let first = reconciler.reconcile(Some(&desired));
        assert!(matches!(first.drift, Some(DriftCheck::NoRevision)), "{first:?}");
        assert!(matches!(first.planned, Some(Ok(Planned { fix: Fix::UpToDate, .. }))), "{first:?}");
        assert!(first.requeue_after > Duration::from_secs(50) && first.requeue_after <= interval);
        let again = reconciler.reconcile(Some(&desired));
        assert!(again.drift.is_none() && again.planned.is_none(), "nothing changed and nothing is due: {again:?}");
        let none = reconciler.reconcile(None);
        assert!(none.planned.is_none(), "{none:?}");
    }
}
