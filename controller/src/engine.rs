//! One reconcile step of the controller, synchronous and free of Kubernetes watches: given the
//! bundles and claims as the cluster holds them now, assemble the policy ([`crate::policy`]), turn
//! the claims into the program's ([`crate::claims`]), resolve, apply through the runtime's
//! [`Reconciler`] (its driver, store, drift checks and backoff), and say what every bundle's and
//! claim's status should be. `run` feeds it from reflectors and writes the statuses.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aptc_core::resolve::{Chains, Options, resolve_with};
use aptc_runtime::cancel::Cancel;
use aptc_runtime::deploy::{DeployError, Request, policy_hash};
use aptc_runtime::deployer::{Deployer, Fix, NotPlanned, Reconciler, Targets};
use aptc_runtime::plan::{ClaimEnds, units};
use aptc_runtime::store::{Cause, Location};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use thiserror::Error;

use crate::claims::{Came, shortened, status, to_program_claim, uses_by_claim};
use crate::crd::{Claim, ClaimStatus, PolicyBundle, PolicyBundleStatus, kube_name};
use crate::dashboard::ControllerSource;
use crate::policy::{self, Archives, Standing};

/// The file of the work directory holding the last good version of each bundle.
const LAST_GOOD: &str = "last-good.json";

/// The user revisions record: changes were checked at admission with their makers' names.
pub const CONTROLLER_USER: &str = "aptc-controller";

/// Why the engine could not start or step.
#[derive(Debug, Error)]
pub enum EngineError {
    /// Boxed: a deploy's error is large, and every `Result` of the engine (and of `run`) would
    /// carry its size (clippy's `result_large_err`).
    #[error(transparent)]
    Deploy(Box<DeployError>),
    #[error(transparent)]
    Policy(#[from] policy::PolicyError),
}

impl From<DeployError> for EngineError {
    fn from(error: DeployError) -> EngineError {
        EngineError::Deploy(Box::new(error))
    }
}

/// The controller's state between steps.
pub struct Engine {
    reconciler: Reconciler,
    state: Location,
    targets: Targets,
    cancel: Cancel,
    work: PathBuf,
    /// Each namespace's last version that checked with the others (kept in `last-good.json` in
    /// the work directory, so a restarted controller still has it).
    last_good: Archives,
    /// The deployable instances the target holds, by key, as last known.
    applied: BTreeSet<String>,
    /// The last assembled policy and what it was assembled from: a step whose bundles are the
    /// same (most steps: a claim changed) neither unpacks nor checks them again.
    assembled: Option<Cached>,
    /// Where each step's policy and desired state are shown (`--ui-addr`).
    dashboard: Option<Arc<ControllerSource>>,
    /// The archives of bundles whose files are a Git commit (repositories under `work/git`).
    sources: crate::git::Sources,
}

/// An assembled policy, with the bundles and last good versions it came from.
struct Cached {
    current: Archives,
    last_good: Archives,
    assembled: Arc<policy::Assembled>,
}

/// What one step found and did.
pub struct Step {
    /// By bundle object name.
    pub bundles: BTreeMap<String, PolicyBundleStatus>,
    /// By (Kubernetes namespace, name).
    pub claims: BTreeMap<(String, String), ClaimStatus>,
    /// The versions in use, by `.apt` namespace (what the admission webhook checks against).
    pub used: Archives,
    /// Actions that failed in this step's apply.
    pub apply_failures: usize,
    /// Why nothing was applied, when the plan was refused or could not be made or applied.
    pub not_applied: Option<String>,
    /// When to step again at the latest.
    pub requeue_after: Duration,
    /// What to tell as Kubernetes Events: each apply and its failure on the claims of the
    /// instance, a claim newly rejected or failed, a bundle newly found invalid.
    pub events: Vec<Note>,
}

/// The object an event is about.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum About {
    /// A Claim, by (Kubernetes namespace, name).
    Claim(String, String),
    /// A PolicyBundle, by name.
    Bundle(String),
}

/// One Kubernetes Event to publish (`run` turns it into an `events.k8s.io/v1` Event).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub about: About,
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// `Applied`, `ApplyFailed`, `Rejected`, `Failed`, `InvalidBundle` (what `kubectl describe`
    /// shows as the reason).
    pub reason: &'static str,
    /// `Apply`, `Resolve`, `Check`: what the controller was doing.
    pub action: &'static str,
    /// The message, at most [`MAX_NOTE`] bytes.
    pub note: String,
}

/// The longest event note (the API server's limit is 1 kB).
pub const MAX_NOTE: usize = 1000;

impl Note {
    fn new(about: About, warning: bool, reason: &'static str, action: &'static str, note: String) -> Note {
        Note { about, warning, reason, action, note: shortened(note, MAX_NOTE) }
    }
}

impl Engine {
    /// An engine keeping its revisions in `state` (the controller's: a Kubernetes store in its
    /// namespace) and unpacked bundles under `work`, applying with `targets`' driver, comparing the
    /// target with the last revision every `interval`.
    pub fn new(
        state: &Location,
        work: &Path,
        targets: Targets,
        cancel: Cancel,
        interval: Duration,
    ) -> Result<Engine, EngineError> {
        std::fs::create_dir_all(work)
            .map_err(|source| policy::PolicyError::Work { path: work.to_path_buf(), source })?;
        let state = state.clone();
        let deployer = Deployer::new(&state, targets.clone(), cancel.clone());
        let (reconciler, target) = Reconciler::new(deployer, None, true, interval)?;
        tracing::info!(%target, "controller engine ready");
        let last_good = match std::fs::read(work.join(LAST_GOOD)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(%error, "{LAST_GOOD} cannot be read; starting without last good versions");
                Archives::new()
            }),
            Err(_) => Archives::new(),
        };
        // Git sources' credentials are read where the clusters' kubeconfigs are: the home.
        let sources = crate::git::Sources::new(&work.join("git")).with_home(targets.home.clone());
        Ok(Engine {
            reconciler: reconciler.checked_upstream(),
            state,
            targets,
            cancel,
            work: work.to_path_buf(),
            last_good,
            applied: BTreeSet::new(),
            assembled: None,
            dashboard: None,
            sources,
        })
    }

    /// The engine, showing each step's policy and desired state on `dashboard`.
    pub fn showing(mut self, dashboard: Arc<ControllerSource>) -> Engine {
        self.dashboard = Some(dashboard);
        self
    }

    /// One step over the bundles and claims the cluster holds now.
    pub fn step<C: Borrow<Claim>>(&mut self, bundles: &[PolicyBundle], claims: &[C], now: &Time) -> Step {
        let claims: Vec<&Claim> = claims.iter().map(Borrow::borrow).collect();
        let claims = claims.as_slice();
        let started = std::time::Instant::now();
        let mut bundle_statuses = BTreeMap::new();
        let mut current = Archives::new();
        let mut names = BTreeMap::new();
        // Bundles whose files could not be had (a Git source that cannot be fetched, a commit
        // that is not there): their last good version stays in use, as for files with errors.
        let mut unfetched: BTreeMap<String, String> = BTreeMap::new();
        for bundle in bundles {
            let name = bundle.metadata.name.clone().unwrap_or_default();
            let namespace = &bundle.spec.namespace;
            if kube_name(namespace).as_deref() != Some(name.as_str()) {
                let status = PolicyBundleStatus {
                    state: Some("Invalid".into()),
                    used_digest: None,
                    diagnostics: vec![format!("the bundle of namespace `{namespace}` must be named after it")],
                    observed_generation: bundle.metadata.generation,
                };
                bundle_statuses.insert(name, status);
                continue;
            }
            match self.sources.archive(&bundle.spec) {
                Ok(archive) => {
                    current.insert(namespace.clone(), archive);
                }
                Err(error) => {
                    tracing::warn!(bundle = %name, %error, "the bundle's files cannot be had");
                    if let Some(good) = self.last_good.get(namespace) {
                        current.insert(namespace.clone(), good.clone());
                    }
                    unfetched.insert(namespace.clone(), error.to_string());
                }
            }
            names.insert(namespace.clone(), (name, bundle.metadata.generation));
        }
        let assembled = match &self.assembled {
            Some(cached) if cached.current == current && cached.last_good == self.last_good => cached.assembled.clone(),
            _ => match policy::assemble(&current, &self.last_good, &self.work) {
                Ok(assembled) => {
                    let assembled = Arc::new(assembled);
                    self.assembled = Some(Cached {
                        current: current.clone(),
                        last_good: self.last_good.clone(),
                        assembled: assembled.clone(),
                    });
                    assembled
                }
                Err(error) => return self.stalled(bundle_statuses, claims, error.to_string(), now),
            },
        };
        let before = self.last_good.clone();
        self.last_good.extend(assembled.used.clone());
        self.last_good.retain(|namespace, _| current.contains_key(namespace));
        if self.last_good != before {
            self.save_last_good();
        }
        for (namespace, (name, generation)) in &names {
            let (state, diagnostics) = match (unfetched.get(namespace), assembled.standing.get(namespace)) {
                (Some(problem), standing) => {
                    let mut lines = vec![problem.clone()];
                    if let Some(Standing::Invalid { problems, .. }) = standing {
                        lines.extend(problems.iter().cloned());
                    }
                    ("Invalid", at_most(&lines, MAX_DIAGNOSTICS))
                }
                (None, Some(Standing::Invalid { problems, .. })) => ("Invalid", at_most(problems, MAX_DIAGNOSTICS)),
                (None, _) => ("InUse", Vec::new()),
            };
            let used_digest = assembled.used.get(namespace).map(|archive| crate::bundle::digest(archive));
            let status = PolicyBundleStatus {
                state: Some(state.into()),
                used_digest,
                diagnostics,
                observed_generation: *generation,
            };
            bundle_statuses.insert(name.clone(), status);
        }
        let mut events = bundle_events(bundles, &bundle_statuses);
        let dir = assembled.checked.dir.path().to_path_buf();
        let Some(mut program) = assembled.checked.program.clone() else {
            let why = assembled.checked.problems.values().flatten().cloned().collect::<Vec<_>>().join("; ");
            let mut step = self.stalled(bundle_statuses, claims, why, now);
            step.used = assembled.used.clone();
            step.events = events;
            return step;
        };
        let mut invalid = BTreeMap::new();
        // The Claim resource of each program claim, by the claim's id.
        let mut resources = BTreeMap::new();
        // Checked against the policy's own claims only (a lookup by id among those filed so far:
        // a scan of every claim per claim was quadratic).
        let mut filed = Vec::with_capacity(claims.len());
        for claim in claims {
            match to_program_claim(claim, &program) {
                Ok(ir) => match resources.entry(ir.id()) {
                    std::collections::btree_map::Entry::Occupied(taken) => {
                        invalid.insert(key(claim), format!("another claim is named `{}`", taken.key()));
                    }
                    std::collections::btree_map::Entry::Vacant(free) => {
                        free.insert(key(claim));
                        filed.push(ir);
                    }
                },
                Err(why) => drop(invalid.insert(key(claim), why)),
            }
        }
        program.claims.extend(filed);
        program.claims.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let deployer = Deployer::new(&self.state, self.targets.clone(), self.cancel.clone());
        let deployed = deployer.deployed_names().unwrap_or_default();
        let assembled_at = started.elapsed();
        // Without decision chains: statuses need only each claim's reason and its place, and the
        // chains were most of a step's time and memory at 10,000 claims (docs/performance.md).
        // The plan then calls a claim refused by access "failed" (its reason says why).
        let resolved = resolve_with(&program, &Options { deployed: &deployed, chains: Chains::None });
        let desired = units(&resolved, &self.targets.secrets());
        let request = Request {
            user: CONTROLLER_USER.into(),
            cause: Cause::Deploy { paths: names.values().map(|(name, _)| format!("policybundle/{name}")).collect() },
            policy: policy_hash(&program),
            claims: Some(ClaimEnds::of(&program, &resolved)),
            desired_state: serde_json::to_value(&resolved).unwrap_or_default().into(),
            desired: desired.clone(),
            program: Some(program),
            parallel: 4,
        };
        let resolved_at = started.elapsed();
        let reconciled = self.reconciler.reconcile(Some(&request));
        let mut apply_failures = 0;
        let mut not_applied = None;
        match &reconciled.planned {
            Some(Ok(planned)) => match &planned.fix {
                Fix::UpToDate => self.applied = desired.keys().cloned().collect(),
                Fix::Recorded(revision) => {
                    apply_failures = revision
                        .actions
                        .iter()
                        .filter(|a| matches!(a.report.outcome, aptc_runtime::apply::Outcome::Failed { .. }))
                        .count();
                    events.extend(apply_events(&revision.actions, &resolved, &resources));
                    self.applied = revision.applied.keys().cloned().collect();
                }
                Fix::Refused(why) => not_applied = Some(why.join("; ")),
                Fix::NotReady(error) => not_applied = Some(error.to_string()),
                Fix::NotRecorded(error) => not_applied = Some(error.to_string()),
                Fix::Reported => {}
            },
            Some(Err(NotPlanned::Store(error) | NotPlanned::Plan(error))) => not_applied = Some(error.to_string()),
            Some(Err(NotPlanned::NoPolicy)) | None => {}
        }
        let applied_at = started.elapsed();
        let mut claim_statuses = BTreeMap::new();
        let uses = uses_by_claim(&resolved);
        for claim in claims {
            let came = match invalid.remove(&key(claim)) {
                Some(why) => Came::Invalid(why),
                None => {
                    let id = format!("{}.{}", crate::crd::apt_namespace(&key(claim).0), key(claim).1);
                    match resolved.claims.get(&id) {
                        Some(outcome) => {
                            let used = uses.get(id.as_str()).map_or(&[][..], Vec::as_slice);
                            Came::Outcome { outcome, state: &resolved, uses: used }
                        }
                        None => Came::Invalid(format!("the resolver has no outcome for `{id}`")),
                    }
                }
            };
            let status = status(claim, came, &self.applied, &dir, now);
            events.extend(claim_event(claim, &status));
            claim_statuses.insert(key(claim), status);
        }
        tracing::debug!(
            claims = claims.len(),
            instances = resolved.instances.len(),
            assemble_and_claims_ms = assembled_at.as_millis() as u64,
            resolve_ms = (resolved_at - assembled_at).as_millis() as u64,
            plan_apply_record_ms = (applied_at - resolved_at).as_millis() as u64,
            statuses_ms = (started.elapsed() - applied_at).as_millis() as u64,
            "step"
        );
        drop(uses);
        if let (Some(dashboard), Some(program)) = (&self.dashboard, request.program) {
            dashboard.show(program, resolved, &dir);
        }
        Step {
            bundles: bundle_statuses,
            claims: claim_statuses,
            used: assembled.used.clone(),
            apply_failures,
            not_applied,
            requeue_after: reconciled.requeue_after,
            events,
        }
    }

    /// Writes the last good versions (atomically: a temporary file renamed over the old one).
    fn save_last_good(&self) {
        let path = self.work.join(LAST_GOOD);
        let temporary = self.work.join(format!("{LAST_GOOD}.new"));
        let written = serde_json::to_vec(&self.last_good)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&temporary, bytes))
            .and_then(|()| std::fs::rename(&temporary, &path));
        if let Err(error) = written {
            tracing::warn!(%error, path = %path.display(), "saving the last good versions");
        }
    }

    /// A step that could not assemble any policy: every claim waits.
    fn stalled(
        &self,
        bundles: BTreeMap<String, PolicyBundleStatus>,
        claims: &[&Claim],
        why: String,
        now: &Time,
    ) -> Step {
        let claims = claims
            .iter()
            .map(|claim| (key(claim), status(claim, Came::NoPolicy, &self.applied, &self.work, now)))
            .collect();
        Step {
            bundles,
            claims,
            used: Archives::new(),
            apply_failures: 0,
            not_applied: Some(why),
            requeue_after: Duration::from_secs(30),
            events: Vec::new(),
        }
    }
}

/// An event for each applied or failed action, on each Claim whose resolution holds its instance
/// (a deleted instance's claims are gone: nothing to tell them).
fn apply_events(
    actions: &[aptc_runtime::store::ActionRecord],
    resolved: &aptc_core::resolve::state::DesiredState,
    resources: &BTreeMap<String, (String, String)>,
) -> Vec<Note> {
    use aptc_runtime::apply::Outcome;
    let mut events = Vec::new();
    for action in actions {
        let (warning, reason, what) = match &action.report.outcome {
            Outcome::Succeeded { .. } => (false, "Applied", String::new()),
            Outcome::Failed { error, .. } => (true, "ApplyFailed", format!(": {error}")),
            Outcome::Skipped { reason } => (true, "ApplyFailed", format!(": skipped, {reason}")),
            Outcome::Interrupted => continue,
        };
        let Some(instance) = resolved.instances.get(&action.key) else { continue };
        let op = format!("{:?}", action.op).to_lowercase();
        let note = format!("{op} {} on {}{what}", action.name, action.place);
        for used in &instance.claims {
            if let Some((namespace, name)) = resources.get(&used.claim) {
                let about = About::Claim(namespace.clone(), name.clone());
                events.push(Note::new(about, warning, reason, "Apply", note.clone()));
            }
        }
    }
    events
}

/// A warning for a claim that is newly rejected or failed (another state, or a new generation).
fn claim_event(claim: &Claim, status: &ClaimStatus) -> Option<Note> {
    let (reason, condition) = match status.state.as_deref() {
        Some("Rejected") => ("Rejected", "Rejected"),
        Some("Failed") => ("Failed", "Failed"),
        _ => return None,
    };
    let before = claim.status.as_ref();
    if before.is_some_and(|b| b.state == status.state && b.observed_generation == status.observed_generation) {
        return None;
    }
    let message = status.conditions.iter().find(|c| c.type_ == condition).map(|c| c.message.clone());
    let (namespace, name) = key(claim);
    Some(Note::new(About::Claim(namespace, name), true, reason, "Resolve", message.unwrap_or_default()))
}

/// A warning for each bundle newly found invalid (another state, or a new generation), with its
/// first diagnostics.
fn bundle_events(bundles: &[PolicyBundle], statuses: &BTreeMap<String, PolicyBundleStatus>) -> Vec<Note> {
    let mut events = Vec::new();
    for bundle in bundles {
        let Some(name) = bundle.metadata.name.as_ref() else { continue };
        let Some(status) = statuses.get(name).filter(|s| s.state.as_deref() == Some("Invalid")) else { continue };
        let before = bundle.status.as_ref();
        if before.is_some_and(|b| b.state == status.state && b.observed_generation == status.observed_generation) {
            continue;
        }
        let used = if status.used_digest.is_some() { "its last good version is used" } else { "it is not used" };
        let note = format!("{used}: {}", status.diagnostics.join("; "));
        events.push(Note::new(About::Bundle(name.clone()), true, "InvalidBundle", "Check", note));
    }
    events
}

/// The most diagnostics a bundle's status lists (an object must stay small).
const MAX_DIAGNOSTICS: usize = 50;

/// The first `n` lines, then how many more there are.
fn at_most(lines: &[String], n: usize) -> Vec<String> {
    let mut out: Vec<String> = lines.iter().take(n).cloned().collect();
    if lines.len() > n {
        out.push(format!("… and {} more", lines.len() - n));
    }
    out
}

/// A claim's (Kubernetes namespace, name).
fn key(claim: &Claim) -> (String, String) {
    (claim.metadata.namespace.clone().unwrap_or_default(), claim.metadata.name.clone().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Bundle;
    use crate::crd::ClaimSpec;
    use crate::policy::tests::SYSTEM;
    use aptc_runtime::deployer::TargetChoice;

    const APP: &str = "namespace web owned_by web_team\nlabel env: \"dev\" | \"prod\" = \"dev\"\nrule no_prod when labels.env == \"prod\" and user.team != \"web_team\" {\n    reject \"prod is for the web team\"\n}\nservice site {\n    component config manifests \"k8s/*.yaml\" {\n        values { env = labels.env }\n    }\n}\ncontract site {\n    context all {\n        use site\n    }\n}\n";
    const TEMPLATE: &str =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${instance.name}\ndata:\n  env: \"${values.env}\"\n";

    fn bundle(namespace: &str, files: &[(&str, &str)]) -> PolicyBundle {
        let files = files.iter().map(|(p, t)| (p.to_string(), t.as_bytes().to_vec())).collect();
        let mut bundle = Bundle { namespace: namespace.into(), files }.resource().unwrap();
        bundle.metadata.generation = Some(1);
        bundle
    }

    fn claim(name: &str, user: &str, env: &str) -> Claim {
        let labels = BTreeMap::from([("env".to_string(), serde_json::json!(env))]);
        let mut claim = Claim::new(name, ClaimSpec { user: user.into(), contract: "site".into(), labels });
        claim.metadata.namespace = Some("web".into());
        claim.metadata.generation = Some(1);
        claim
    }

    fn engine(dir: &Path) -> Engine {
        let targets = Targets {
            choice: TargetChoice::Render,
            out: Some(dir.join("out")),
            default_out: dir.join("out"),
            helm: None,
            post_renderer: Ok(PathBuf::from("aptc")),
            home: Default::default(),
        };
        let state = Location::File(dir.join("work/state.db"));
        Engine::new(&state, &dir.join("work"), targets, Cancel::default(), Duration::from_secs(60)).unwrap()
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap())
    }

    #[test]
    fn a_step_applies_resolved_claims_and_says_why_others_did_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = engine(dir.path());
        let bundles = [
            bundle("system", &[("system.apt", SYSTEM)]),
            bundle("web", &[("web/web.apt", APP), ("web/k8s/cm.yaml", TEMPLATE)]),
        ];
        let claims =
            [claim("ada-prod", "ada", "prod"), claim("eve-prod", "eve", "prod"), claim("bad", "ada", "staging")];
        let step = engine.step(&bundles, &claims, &now());
        assert_eq!(step.not_applied, None);
        assert_eq!(step.bundles["web"].state.as_deref(), Some("InUse"));
        let state = |name: &str| step.claims[&("web".to_string(), name.to_string())].state.clone().unwrap();
        assert_eq!(state("ada-prod"), "Ready");
        assert_eq!(state("eve-prod"), "Rejected");
        assert_eq!(state("bad"), "Failed");
        // The instance was rendered by the render driver.
        let instances = &step.claims[&("web".to_string(), "ada-prod".to_string())].instances;
        let instance = instances.iter().find(|i| i.component == "config").expect("the manifests instance");
        assert_eq!((instance.cluster.as_str(), instance.namespace.as_str()), ("system.local", "default"));
        let rendered = walk(&dir.path().join("out"));
        assert!(rendered.iter().any(|p| p.contains(&instance.name)), "{rendered:?}");
        let told = |step: &Step| -> Vec<(String, &'static str)> {
            let mut told: Vec<_> = step
                .events
                .iter()
                .map(|e| match &e.about {
                    About::Claim(_, name) | About::Bundle(name) => (name.clone(), e.reason),
                })
                .collect();
            told.sort();
            told.dedup();
            told
        };
        let expected = [("ada-prod", "Applied"), ("bad", "Failed"), ("eve-prod", "Rejected")];
        assert_eq!(told(&step), expected.map(|(n, r)| (n.to_string(), r)));
        // Told once: the same claims with the statuses written are quiet.
        let with_statuses: Vec<Claim> = claims
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.status = Some(step.claims[&key(&c)].clone());
                c
            })
            .collect();
        assert_eq!(told(&engine.step(&bundles, &with_statuses, &now())), []);

        // A broken bundle keeps the last good version in use; the claims stay ready.
        let broken = [bundles[0].clone(), bundle("web", &[("web/web.apt", "namespace web\ncontract site {\n")])];
        let step = engine.step(&broken, &claims, &now());
        let web = &step.bundles["web"];
        assert_eq!(web.state.as_deref(), Some("Invalid"));
        assert!(web.diagnostics[0].starts_with("web/web/web.apt:"), "{:?}", web.diagnostics);
        assert_eq!(web.used_digest.as_deref(), Some(bundles[1].spec.digest.as_str()));
        assert_eq!(step.claims[&("web".to_string(), "ada-prod".to_string())].state.as_deref(), Some("Ready"));

        // A restarted controller (a new engine on the same work directory) picks up where it
        // left off: the last good version is still used, nothing is applied again.
        drop(engine);
        let revisions = revisions(dir.path());
        assert_eq!(revisions, 1, "the first step applied once");
        let mut engine = super::tests::engine(dir.path());
        let step = engine.step(&broken, &claims, &now());
        assert_eq!(step.bundles["web"].used_digest.as_deref(), Some(bundles[1].spec.digest.as_str()));
        assert_eq!(step.claims[&("web".to_string(), "ada-prod".to_string())].state.as_deref(), Some("Ready"));
        assert_eq!(revisions, super::tests::revisions(dir.path()), "nothing was applied again");
    }

    #[test]
    fn a_git_bundle_that_cannot_be_fetched_keeps_its_last_good_version() {
        let dir = tempfile::tempdir().unwrap();
        let mut engine = engine(dir.path());
        let good = [
            bundle("system", &[("system.apt", SYSTEM)]),
            bundle("web", &[("web/web.apt", APP), ("web/k8s/cm.yaml", TEMPLATE)]),
        ];
        let claims = [claim("ada-prod", "ada", "prod")];
        let step = engine.step(&good, &claims, &now());
        assert_eq!(step.bundles["web"].state.as_deref(), Some("InUse"));
        // Moved to a repository nobody serves (port 9 on loopback: nothing listens there).
        let mut moved = good[1].clone();
        moved.spec.archive = String::new();
        moved.spec.git = Some(crate::crd::GitSource {
            url: "git://127.0.0.1:9/policy".into(),
            revision: "0123456789abcdef0123456789abcdef01234567".into(),
            path: String::new(),
            secret_ref: None,
        });
        let step = engine.step(&[good[0].clone(), moved.clone()], &claims, &now());
        let web = &step.bundles["web"];
        assert_eq!(web.state.as_deref(), Some("Invalid"));
        assert!(web.diagnostics[0].starts_with("cannot fetch git://127.0.0.1:9/policy: "), "{:?}", web.diagnostics);
        assert_eq!(web.used_digest.as_deref(), Some(good[1].spec.digest.as_str()));
        assert_eq!(step.claims[&("web".to_string(), "ada-prod".to_string())].state.as_deref(), Some("Ready"));
        // A new team's bundle on a branch has no last good version: reported, left out.
        let mut shop = bundle("shop", &[("shop/shop.apt", "namespace shop\n")]);
        shop.spec.archive = String::new();
        shop.spec.git = Some(crate::crd::GitSource {
            url: "https://git.example.com/p".into(),
            revision: "main".into(),
            path: String::new(),
            secret_ref: None,
        });
        let step = engine.step(&[good[0].clone(), moved, shop], &claims, &now());
        let shop = &step.bundles["shop"];
        assert_eq!(shop.state.as_deref(), Some("Invalid"));
        assert!(shop.diagnostics[0].contains("`main` is not a full commit id"), "{:?}", shop.diagnostics);
        assert_eq!(shop.used_digest, None);
    }

    /// How many revisions the engine's store holds.
    fn revisions(dir: &Path) -> usize {
        let store = aptc_runtime::store::open_read(&Location::File(dir.join("work/state.db"))).unwrap().unwrap();
        store.list().unwrap().len()
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            }
            out.push(path.display().to_string());
        }
        out
    }
}
