//! The resolver: IR → desired state, a pure function (docs/language.md §15).
//!
//! Claims are resolved one at a time in the IR's order (namespace, then name); each is all or
//! nothing: its instances are staged and enter the desired state only if it resolves and agrees
//! with the instances earlier claims already fixed. The same program always gives the same
//! state, byte for byte.

mod classes;
mod incremental;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};

use crate::FastMap;
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use crate::ir::{Action, Claim, Component, Consumer, LabelOp, Origin, Program, SYSTEM_NAMESPACE, Source, Value};

use crate::access::Access;
use crate::eval::{Env, EvalError, Observer, Placement, Subject};
use classes::{Classes, Read, Recorder};
pub use incremental::{Incremental, Update};
pub use state::*;

/// Contracts nested deeper than this are taken for a cycle.
const MAX_DEPTH: usize = 64;

/// Resolves every claim of `program`.
///
/// Claims resolve independently and in parallel (each stages its own instances); the merge
/// then runs in claim order, so the first claim to reach a shared instance fixes it and the
/// result is the same on any number of threads.
pub fn resolve(program: &Program) -> DesiredState {
    resolve_keeping(program, &DeployedNames::new())
}

/// Resolves every claim of `program`, giving each instance in `deployed` the name it was deployed
/// with (docs/language.md §5.8): upgrading aptc or changing how names are made never renames, and
/// so never reinstalls, what runs. Every claim keeps its decision chain.
pub fn resolve_keeping(program: &Program, deployed: &DeployedNames) -> DesiredState {
    resolve_with(program, &Options { deployed, chains: Chains::All })
}

/// What to resolve with besides the program: the names deployed instances keep, and whose
/// decision chains to keep.
#[derive(Clone, Copy, Debug)]
pub struct Options<'o> {
    /// Instances keep the names they were deployed with (see [`resolve_keeping`]).
    pub deployed: &'o DeployedNames,
    pub chains: Chains<'o>,
}

/// Whose decision chains a resolution keeps. A chain is ~60 steps per claim, most of the memory
/// of a large resolution; only `aptc explain` and deploys (which tell access refusals from
/// faults by the last contract a failed claim entered) read them, so `plan`, `graph` and the
/// like resolve with [`Chains::None`], and `explain` recomputes the one chain it shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chains<'o> {
    All,
    None,
    /// Only these claims' (ids, `namespace.name`).
    Only(&'o BTreeSet<String>),
}

/// Resolves every claim of `program` as `options` say; the state is the same whatever chains
/// are kept, but for the claims' `decisions`. Keeping none, claims alike in all their resolution
/// reads resolve once (`classes`).
pub fn resolve_with(program: &Program, options: &Options) -> DesiredState {
    let access = Access::new(program);
    let classes = classes_for(program, program.claims.iter(), &access, options);
    resolve_chunks(program, &access, classes, program.claims.chunks(CHUNK), options)
}

/// [`resolve_with`] for a caller done with the program once it is resolved (`aptc plan`): the
/// claims' IR is freed as they merge, so the state's last claims never sit next to the IR of all
/// the others (~130 bytes a claim, 12 MiB at 100,000 claims, at `plan`'s peak). The state is the
/// same, byte for byte.
pub fn resolve_taking(mut program: Program, options: &Options) -> DesiredState {
    let mut rest = std::mem::take(&mut program.claims);
    let access = Access::new(&program);
    let classes = classes_for(&program, rest.iter(), &access, options);
    // Taken a chunk at a time from the back of the reversed claims, so none is copied twice and
    // the buffer can shrink; one chunk's buffer at a time, reused.
    rest.reverse();
    let chunks = std::iter::from_fn(move || {
        // The chunks of `resolve_with`: the first CHUNK claims, the next, and so on.
        let mut chunk = rest.split_off(rest.len().saturating_sub(CHUNK));
        if chunk.is_empty() {
            return None;
        }
        chunk.reverse();
        // Shrunk to a quarter (not a half, which mimalloc reallocates in place), so the memory
        // of the claims merged is freed as resolution goes on.
        if rest.len() < rest.capacity() / 4 {
            rest.shrink_to_fit();
        }
        Some(chunk)
    });
    resolve_chunks(&program, &access, classes, chunks, options)
}

/// The classes of `claims` when `options` keep no decision chain (then claims alike in all their
/// resolution reads resolve once), else none.
fn classes_for<'c>(
    program: &Program,
    claims: impl Iterator<Item = &'c Claim>,
    access: &Access,
    options: &Options,
) -> Option<Classes> {
    if options.chains == Chains::None { Classes::new(program, claims, access) } else { None }
}

/// Resolves `chunks` of claims, a chunk at a time and in order, with the rest of `program` (its
/// own claims are not read), and `classes` ([`classes_for`]) made of the same claims.
fn resolve_chunks<Chunk: std::ops::Deref<Target = [Claim]>>(
    program: &Program,
    access: &Access,
    classes: Option<Classes>,
    chunks: impl Iterator<Item = Chunk>,
    options: &Options,
) -> DesiredState {
    let names = Names::new(program);
    let deployed = options.deployed;
    let mut merging = Merging { taken: TakenNames::of(deployed), ..Merging::default() };
    // Claims are resolved a chunk at a time, so only one chunk's staged trees wait for the merge.
    for chunk in chunks {
        // The instances earlier chunks fixed stay as they are while this chunk resolves: each
        // worker checks its claim against them itself (see `settle`).
        let fixed = &merging.state;
        let runs: Vec<(ClaimRunResult, Option<Failure>)> = chunk
            .par_iter()
            .map(|claim| match &classes {
                Some(classes) => classes.resolve(program, access, &names, deployed, claim, fixed),
                None => {
                    let (id, result, mut staged, decisions) =
                        resolve_claim(program, access, &names, deployed, options.chains, claim, None, Some(fixed));
                    let known = settle(fixed, &result, &mut staged);
                    ((id, result, staged, decisions), known)
                }
            })
            .collect();
        for (claim, ((id, result, staged, decisions), known)) in chunk.iter().zip(runs) {
            merging.claim(claim, id, result, staged, decisions, known);
        }
    }
    merging.state
}

/// Resolves claims of one's own against a program, each as if it were the program's only claim
/// (`core::verify` judges every possible claim so, docs/verification.md). The program's own claims
/// are not resolved; what it prepares (roles, shared names) is kept across the claims.
pub struct Alone<'p> {
    program: &'p Program,
    access: Access<'p>,
    names: Names<'p>,
    deployed: DeployedNames,
}

impl<'p> Alone<'p> {
    pub fn new(program: &'p Program) -> Alone<'p> {
        Alone { program, access: Access::new(program), names: Names::new(program), deployed: DeployedNames::new() }
    }

    /// The desired state of `claim` alone, exactly as [`resolve_with`] would give it for a
    /// program whose only claim it is; with its decision chain when `chain`.
    pub fn resolve(&self, claim: &Claim, chain: bool) -> DesiredState {
        self.resolve_observed(claim, chain, None)
    }

    /// As [`Alone::resolve`], telling `observer` everything the resolution reads of the claim's
    /// labels (the verification engine's path conditions, docs/verification.md §3).
    pub fn resolve_observed(&self, claim: &Claim, chain: bool, observer: Option<&dyn Observer>) -> DesiredState {
        let chains = if chain { Chains::All } else { Chains::None };
        let mut merging = Merging { taken: TakenNames::of(&self.deployed), ..Merging::default() };
        let (id, result, staged, decisions) =
            resolve_claim(self.program, &self.access, &self.names, &self.deployed, chains, claim, observer, None);
        merging.claim(claim, id, result, staged, decisions, None);
        merging.state
    }
}

/// The Kubernetes names instances were deployed with, by instance key (from the last revision).
pub type DeployedNames = BTreeMap<String, DeployedName>;

/// Where a deployed instance runs and what it is called there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeployedName {
    pub name: String,
    pub id: String,
    pub cluster: String,
    pub k8s_namespace: String,
}

/// Claims resolved in parallel before their merge: enough to keep two to eight threads busy,
/// few enough that their staged instances stay small next to the desired state.
const CHUNK: usize = 256;

/// One claim resolved on its own; to be settled against `fixed`, if given ([`ClaimRun::cut`]).
#[allow(clippy::too_many_arguments)]
fn resolve_claim(
    program: &Program,
    access: &Access,
    names: &Names,
    deployed: &DeployedNames,
    chains: Chains,
    claim: &Claim,
    observer: Option<&dyn Observer>,
    fixed: Option<&DesiredState>,
) -> ClaimRunResult {
    let id = claim.id();
    let keeps_chain = match chains {
        Chains::All => true,
        Chains::None => false,
        Chains::Only(only) => only.contains(&id),
    };
    let mut run = ClaimRun::new(program, access, names, deployed, &id, claim, observer, None);
    run.keeps_chain = keeps_chain;
    run.fixed = fixed;
    let result = subject_of(access, claim).and_then(|(subject, labels)| run.start(&claim.contract, subject, labels));
    let (staged, decisions) = (run.staged, run.decisions);
    (id, result, staged, decisions)
}

/// The claim's consumer as expressions see it, and the claim's labels with the consumer's merged
/// in (§15.1); a consumer that does not exist fails the claim.
fn subject_of(access: &Access, claim: &Claim) -> Result<(Subject, BTreeMap<String, Value>), Failure> {
    let subject = consumer(access, &claim.consumer).ok_or_else(|| missing_consumer(claim))?;
    let mut labels = BTreeMap::clone(&claim.labels);
    labels.extend(subject.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    Ok((subject, labels))
}

/// How a claim whose consumer does not exist fails.
fn missing_consumer(claim: &Claim) -> Failure {
    let (what, name) = match &claim.consumer {
        Consumer::User(name) => ("user", name),
        Consumer::Team(name) => ("team", name),
    };
    Failure::failed(format!("the claim's {what} `{name}` does not exist"), Some(&claim.origin))
}

/// A claim's consumer as expressions see it, if it exists.
fn consumer(access: &Access, consumer: &Consumer) -> Option<Subject> {
    match consumer {
        Consumer::User(name) => access.user(name),
        Consumer::Team(name) => access.team(name),
    }
}

/// The program's contract ids, context names, rule ids and their origins, its services' and
/// components' names and its clusters' ids as shared strings: every claim's decision chain (~60
/// steps) and every instance point to them instead of copying them (an instance's contract,
/// context, service, component, cluster and kind are reference counts bumped, not strings
/// allocated). Each contract's, service's and namespace's rules' are made the first time a claim
/// needs them, so resolving a few claims of a large policy pays for the few contracts they reach,
/// not for all.
struct Names<'p> {
    program: &'p Program,
    contracts: FastMap<&'p str, OnceLock<ContractNames>>,
    /// Rules by namespace, in the IR's order.
    rules: FastMap<&'p str, OnceLock<Vec<Shared>>>,
    services: FastMap<&'p str, OnceLock<ServiceNames>>,
    /// Cluster ids (`system.name`).
    clusters: FastMap<&'p str, Arc<str>>,
    /// The component of every service instance.
    root: Arc<str>,
}

/// A service's id and its components' names and instance kinds (a manifests kind without its
/// rendered files), in the IR's order.
struct ServiceNames {
    id: Arc<str>,
    components: Vec<(Arc<str>, InstanceKind)>,
}

impl ServiceNames {
    fn of(id: &str, service: &crate::ir::Service) -> ServiceNames {
        let components = service
            .components
            .iter()
            .map(|component| {
                let kind = match &component.source {
                    Source::Uses { contract } => InstanceKind::Uses { contract: Arc::from(contract.as_str()) },
                    Source::Chart { chart, repo, version, base_dir } => InstanceKind::Chart {
                        chart: Arc::from(chart.as_str()),
                        repo: repo.as_deref().map(Arc::from),
                        version: version.as_deref().map(Arc::from),
                        base_dir: Arc::from(base_dir.as_str()),
                    },
                    Source::Manifests { glob, base_dir, .. } => InstanceKind::Manifests {
                        glob: Arc::from(glob.as_str()),
                        base_dir: Arc::from(base_dir.as_str()),
                        files: Vec::new(),
                    },
                };
                (Arc::from(component.name.as_str()), kind)
            })
            .collect();
        ServiceNames { id: Arc::from(id), components }
    }
}

/// A name and its origin, shared by every decision that cites them.
type Shared = (Arc<str>, Arc<Origin>);

/// A contract's id and its contexts' names, in the IR's order.
struct ContractNames {
    id: Arc<str>,
    contexts: Vec<ContextNames>,
}

/// A context's name and origin, and the bases of its instances' names ([`name_base`]): one per
/// component of its service, in the IR's order (none if the service does not exist), then its
/// service instance's. The ~100,000 instances a 10,000-claim plan builds each take theirs here.
struct ContextNames {
    shared: Shared,
    components: Vec<Box<str>>,
    root: Box<str>,
}

impl<'p> Names<'p> {
    fn new(program: &'p Program) -> Names<'p> {
        Names {
            program,
            contracts: program.contracts.keys().map(|id| (id.as_str(), OnceLock::new())).collect(),
            rules: program.rules.keys().map(|ns| (ns.as_str(), OnceLock::new())).collect(),
            services: program.services.keys().map(|id| (id.as_str(), OnceLock::new())).collect(),
            clusters: program.clusters.keys().map(|id| (id.as_str(), Arc::from(id.as_str()))).collect(),
            root: Arc::from("root"),
        }
    }

    /// Service `id`'s names, if it exists.
    fn service(&self, id: &str) -> Option<&ServiceNames> {
        let names = self.services.get(id)?;
        let service = self.program.services.get(id)?;
        Some(names.get_or_init(|| ServiceNames::of(id, service)))
    }

    fn cluster(&self, id: &str) -> Arc<str> {
        self.clusters.get(id).cloned().unwrap_or_else(|| Arc::from(id))
    }

    fn of_contract(&self, id: &str) -> Option<&ContractNames> {
        let names = self.contracts.get(id)?;
        if let Some(known) = names.get() {
            return Some(known);
        }
        let contract = self.program.contracts.get(id)?;
        Some(names.get_or_init(|| {
            ContractNames {
                id: Arc::from(id),
                contexts: contract
                    .contexts
                    .iter()
                    .map(|context| ContextNames {
                        shared: (Arc::from(context.name.as_str()), Arc::new(context.origin.clone())),
                        components: self.program.services.get(&context.service).map_or_else(Vec::new, |service| {
                            service.components.iter().map(|component| name_base(id, &component.name)).collect()
                        }),
                        root: name_base(id, "root"),
                    })
                    .collect(),
            }
        }))
    }

    fn contract(&self, id: &str) -> Arc<str> {
        self.of_contract(id).map_or_else(|| Arc::from(id), |names| names.id.clone())
    }

    /// The names of contract `id`'s contexts, in order.
    fn contexts(&self, id: &str) -> &[ContextNames] {
        self.of_contract(id).map_or(&[], |names| &names.contexts)
    }

    /// The ids and origins of namespace `namespace`'s rules, in order.
    fn rules(&self, namespace: &str) -> &[Shared] {
        let (Some(rules), Some(names)) = (self.program.rules.get(namespace), self.rules.get(namespace)) else {
            return &[];
        };
        names.get_or_init(|| {
            rules
                .iter()
                .map(|rule| (Arc::from(format!("{}.{}", rule.namespace, rule.name)), Arc::new(rule.origin.clone())))
                .collect()
        })
    }
}

/// The desired state being merged, with what merging needs besides.
#[derive(Default)]
struct Merging {
    state: DesiredState,
    labels: LabelSets,
    /// The claims' reasons and the notes' texts after the claim, each shared when equal
    /// ([`ClaimOutcome::reason`], [`ConflictNote`]).
    texts: crate::intern::Interner<str>,
    /// The names instances hold so far, so no two instances share one (§5.8).
    taken: TakenNames,
}

impl Merging {
    /// Merges one claim's run into the state, in claim order (§15.5). `known` is the conflict
    /// [`settle`] found against instances fixed before this claim's chunk (`staged` then holds only
    /// the instances that can still conflict before it in key order).
    fn claim(
        &mut self,
        claim: &Claim,
        id: String,
        result: Result<String, Failure>,
        staged: Staged,
        decisions: Vec<Decision>,
        known: Option<Failure>,
    ) {
        let Merging { state, labels, texts, taken } = self;
        let mut outcome = Box::new(ClaimOutcome {
            claim: id.clone(),
            origin: claim.origin.clone(),
            status: Status::Resolved,
            reason: None,
            reason_origin: None,
            root: None,
            labels: None,
            decisions: Vec::new(),
            notes: Vec::new(),
        });
        let checked = result
            .and_then(|root| merge_check(state, &staged).map(|()| root))
            .and_then(|root| known.map_or(Ok(root), Err))
            .and_then(|root| taken.take(state, &staged, &id).map(|()| root));
        match checked {
            Ok(root) => {
                merge(state, labels, staged);
                // Its uses were just appended: the last depth-0 use of the root is this claim's.
                outcome.labels = state.instances.get(&root).and_then(|instance| {
                    instance.claims.iter().rev().find(|u| u.claim == id && u.depth == 0).map(|u| u.labels.clone())
                });
                outcome.root = Some(root);
            }
            Err(Failure { status, reason, origin, conflict, .. }) => {
                if let Some((earlier, note)) = conflict
                    && let Some(other) = state.claims.get_mut(&earlier)
                {
                    other.notes.push(ConflictNote::new(id.clone(), texts.intern(note)));
                }
                outcome.status = status;
                outcome.reason = Some(texts.intern(reason));
                outcome.reason_origin = origin.map(Box::new);
            }
        }
        outcome.decisions = decisions;
        state.claims.insert(id, outcome);
    }
}

/// Equal label maps of different claims, shared: many claims reach an instance with the same labels.
#[derive(Default)]
struct LabelSets(crate::intern::Interner<BTreeMap<String, serde_json::Value>>);

impl LabelSets {
    /// Shares the labels of every use of one claim's instances: the plan format writes a table of
    /// the distinct label sets, told apart by pointer.
    fn share_uses(&mut self, staged: &mut Staged) {
        type Labels = Arc<BTreeMap<String, serde_json::Value>>;
        // One claim's instances share a few maps: intern each once. (The claim's own map, the
        // interned one.)
        let mut shared: Vec<(Labels, Labels)> = Vec::new();
        for instance in staged.values_mut() {
            for used in &mut instance.claims {
                match shared.iter().find(|(own, _)| Arc::ptr_eq(own, &used.labels)) {
                    Some((_, interned)) => used.labels = interned.clone(),
                    None => {
                        let mut interned = used.labels.clone();
                        self.0.share(&mut interned);
                        let own = std::mem::replace(&mut used.labels, interned.clone());
                        shared.push((own, interned));
                    }
                }
            }
        }
    }
}

/// A claim resolved on its own: its id, root or failure, staged instances and decisions.
type ClaimRunResult = (String, Result<String, Failure>, Staged, Vec<Decision>);

/// A claim's instances before the merge, boxed: an `Instance` is ~400 bytes, and B-tree nodes
/// of them are allocations large enough to make glibc's allocator consolidate on every claim.
type Staged = BTreeMap<String, Box<Instance>>;

/// A component's instance (none past the claim's cut: [`ClaimRun::passes`]), and what it
/// publishes (what its siblings see of its discovery is its entry in the service's discovery map).
type ComponentResult = (Option<Instance>, BTreeMap<String, Value>);

/// Why a claim did not resolve.
#[derive(Clone, Debug)]
struct Failure {
    status: Status,
    reason: String,
    origin: Option<Origin>,
    /// For a conflict: the earlier claim and what the note it gets says after the claim
    /// ([`ConflictNote::about`]).
    conflict: Option<(String, String)>,
    /// Whether the reason already names the contract and depth where it happened.
    located: bool,
}

impl Failure {
    fn failed(reason: impl Into<String>, origin: Option<&Origin>) -> Failure {
        Failure {
            status: Status::Failed,
            reason: reason.into(),
            origin: origin.cloned(),
            conflict: None,
            located: false,
        }
    }

    /// Names the innermost contract and depth where the failure happened (§15.7); a rejection
    /// of the claimed contract itself (depth 0) keeps the rule's message as written.
    fn located(mut self, contract: &str, depth: usize) -> Failure {
        if !self.located && (self.status != Status::Rejected || depth > 0) {
            self.reason = format!("{} (in contract `{contract}`, depth {depth})", self.reason);
        }
        self.located = true;
        self
    }

    fn eval(error: EvalError, what: &str, origin: &Origin) -> Failure {
        Failure::failed(format!("{what}: {error}"), Some(origin))
    }
}

/// The state of resolving one claim.
struct ClaimRun<'a> {
    program: &'a Program,
    access: &'a Access<'a>,
    names: &'a Names<'a>,
    deployed: &'a DeployedNames,
    claim_id: &'a str,
    claim_name: &'a str,
    claim_namespace: &'a str,
    subject: Subject,
    /// Whether `decisions` is written ([`Chains`]); when not, no step is even made.
    keeps_chain: bool,
    decisions: Vec<Decision>,
    staged: Staged,
    /// Contracts being resolved, outermost first (a repeat is a cycle).
    stack: Vec<String>,
    /// The contracts this claim already resolved, by contract id: with the same labels, placement
    /// and depth, a contract resolves to the same instances, so a second path (a diamond of
    /// `uses`) takes the first result instead of resolving the subtree again.
    memo: BTreeMap<String, Vec<Memo>>,
    /// Every contract this claim entered or reused, in order (a memo's subtree is a range of it).
    entered: Vec<Arc<str>>,
    /// Told what the run reads of the labels (`Alone::resolve_observed`), or of the consumer and
    /// claim (`reads`).
    observer: Option<&'a dyn Observer>,
    /// Told what the run reads of the consumer and the claim, for the memo of claims
    /// ([`classes`]): the observer too, and told the access checks.
    reads: Option<&'a Recorder>,
    /// The instances the chunks before this claim's fixed, when the run is settled against them
    /// ([`settle`]): staging an instance checks it against them too, to find the cut.
    fixed: Option<&'a DesiredState>,
    /// The least key of a staged instance that conflicts with one `fixed` holds. The claim fails
    /// then: on that conflict, on one before it in key order, or on an error of its own. An
    /// instance past the cut can matter only to the check that the claim computes it alike each
    /// time it reaches it, so it is kept as its values in `passed`, not built and staged. (On
    /// Aptomi's engine shape, 77% of the instances staged at 10,000 claims were past the claim's
    /// first conflict, built only to be dropped.)
    cut: Option<String>,
    /// The instances past the cut, by key: their values and discovery as computed.
    passed: FastMap<String, (Value, BTreeMap<String, Value>)>,
    /// Each distinct label map of the claim's contracts, as its instances' uses hold it
    /// ([`ClaimRun::label_json`]).
    label_json: Vec<(Arc<BTreeMap<String, Value>>, LabelJson)>,
}

/// Labels by name, as an instance's uses hold them.
type LabelJson = Arc<BTreeMap<String, serde_json::Value>>;

/// One resolution of a contract within a claim: its inputs, its result, and every contract its
/// subtree entered (a path whose stack holds one of them must resolve again, to report the cycle).
struct Memo {
    depth: usize,
    labels: Arc<BTreeMap<String, Value>>,
    placement: Option<Placement>,
    resolved: Resolved,
    entered: Vec<Arc<str>>,
    /// Its decisions, in the claim's chain.
    chain: std::ops::Range<usize>,
}

/// A contract reached again with the same inputs repeats its decisions in the claim's chain while
/// the chain stays this short; beyond, the repeat is recorded as the contract entered and the
/// service instance it resolved to (a diamond of `uses` would otherwise write out 2^depth chains).
const CHAIN_WRITTEN_OUT: usize = 1_024;

/// What resolving a contract gives its user: the service instance and what it publishes.
#[derive(Clone)]
struct Resolved {
    key: String,
    published: BTreeMap<String, Value>,
}

/// Where a component instance sits: its service instance's contract, context, service, placement
/// and keys, the names shared by every instance built there.
struct Site<'s> {
    contract: Arc<str>,
    context: Arc<str>,
    service: Arc<str>,
    cluster: Arc<str>,
    k8s_namespace: Arc<str>,
    keys: Arc<[String]>,
    placement: &'s Placement,
}

impl<'a> ClaimRun<'a> {
    /// Adds a step to the decision chain, if this run keeps one.
    fn decide(&mut self, step: impl FnOnce(&Self) -> Decision) {
        if self.keeps_chain {
            let step = step(self);
            self.decisions.push(step);
        }
    }

    /// The name and id of the instance `key`, whose name starts with `base` ([`name_base`]): the
    /// one it was deployed with, else a new one.
    fn named(&self, base: &str, key: &str) -> (String, String) {
        match self.deployed.get(key) {
            Some(deployed) => (deployed.name.clone(), deployed.id.clone()),
            None => name_with_base(base, key),
        }
    }

    /// A run of claim `claim` (whose id is `claim_id`) keeping no decision chain.
    #[allow(clippy::too_many_arguments)]
    fn new(
        program: &'a Program,
        access: &'a Access<'a>,
        names: &'a Names<'a>,
        deployed: &'a DeployedNames,
        claim_id: &'a str,
        claim: &'a Claim,
        observer: Option<&'a dyn Observer>,
        reads: Option<&'a Recorder>,
    ) -> ClaimRun<'a> {
        ClaimRun {
            keeps_chain: false,
            program,
            access,
            names,
            deployed,
            claim_id,
            claim_name: &claim.name,
            claim_namespace: &claim.namespace,
            subject: Subject::default(),
            decisions: Vec::new(),
            staged: BTreeMap::new(),
            stack: Vec::new(),
            memo: BTreeMap::new(),
            entered: Vec::new(),
            observer,
            reads,
            fixed: None,
            cut: None,
            passed: FastMap::default(),
            label_json: Vec::new(),
        }
    }

    /// Resolves the claimed contract for `subject` with the claim's `labels` ([`subject_of`]):
    /// the key of its service instance.
    fn start(&mut self, contract: &str, subject: Subject, labels: BTreeMap<String, Value>) -> Result<String, Failure> {
        self.subject = subject;
        let resolved = self.contract(contract, Arc::new(labels), None, 0)?;
        Ok(resolved.key)
    }

    fn env<'e>(
        &'e self,
        labels: &'e BTreeMap<String, Value>,
        placement: Option<&'e Placement>,
        instance: Option<(&'e str, &'e str)>,
        discovery: Option<&'e BTreeMap<String, BTreeMap<String, Value>>>,
    ) -> Env<'e> {
        Env {
            program: self.program,
            labels,
            user: &self.subject,
            claim: (self.claim_name, self.claim_namespace, self.claim_id),
            placement,
            instance,
            discovery,
            values: None,
            observer: self.observer,
        }
    }

    /// Applies a label operation; its effect as a rule's decision shows it, if the run keeps its
    /// chain (a run keeping none formats nothing: a `set` per context of every contract).
    ///
    /// The labels are copied only when the operation changes them and another holds them (the
    /// caller's contract, its other `uses`, the memo): below the claimed contract, a context
    /// mostly sets a label to the value it already has (`tier` on the engine shape), and the
    /// contract then works on the labels it received, not on a copy.
    fn apply(
        &self,
        op: &LabelOp,
        labels: &mut Arc<BTreeMap<String, Value>>,
        placement: Option<&Placement>,
        origin: &Origin,
    ) -> Result<Option<String>, Failure> {
        match op {
            LabelOp::Set { label, value } => {
                let value = self
                    .env(labels, placement, None, None)
                    .eval(value)
                    .map_err(|e| Failure::eval(e, &format!("setting label `{label}`"), origin))?;
                let effect = self.keeps_chain.then(|| format!("set {label} = {}", value.literal()));
                if labels.get(label) != Some(&value) {
                    Arc::make_mut(labels).insert(label.clone(), value);
                }
                Ok(effect)
            }
            LabelOp::Remove { label } => {
                if labels.contains_key(label) {
                    Arc::make_mut(labels).remove(label);
                }
                Ok(self.keeps_chain.then(|| format!("remove {label}")))
            }
        }
    }

    /// The labels as an instance's uses hold them: made once per distinct map of the claim (a
    /// contract that changes no label shares its caller's).
    fn label_json(&mut self, labels: &Arc<BTreeMap<String, Value>>) -> LabelJson {
        if let Some((_, json)) = self.label_json.iter().find(|(map, _)| Arc::ptr_eq(map, labels)) {
            return json.clone();
        }
        let json: LabelJson = Arc::new(labels.iter().map(|(k, v)| (k.clone(), v.to_json())).collect());
        self.label_json.push((labels.clone(), json.clone()));
        json
    }

    /// Resolves a contract; a failure names the contract and depth where it happened.
    ///
    /// A contract this claim already resolved with the same labels, placement and depth gives the
    /// same instances (resolution is a function of those), so it is resolved once per claim
    /// however many `uses` paths reach it; the decision chain repeats its decisions (up to
    /// [`CHAIN_WRITTEN_OUT`]). Its instances are staged already, so the §15.5 check of the two
    /// paths holds by construction.
    fn contract(
        &mut self,
        id: &str,
        labels: Arc<BTreeMap<String, Value>>,
        placement: Option<Placement>,
        depth: usize,
    ) -> Result<Resolved, Failure> {
        if let Some((resolved, chain, entered)) = self.reuse(id, &labels, placement.as_ref(), depth) {
            self.entered.extend(entered);
            if self.decisions.len() + chain.len() <= CHAIN_WRITTEN_OUT {
                self.decisions.extend_from_within(chain);
            } else {
                self.decide(|run| Decision::EnterContract { contract: run.names.contract(id), depth });
                self.decide(|_| Decision::Component { key: resolved.key.clone(), included: true });
            }
            return Ok(resolved);
        }
        let start = self.decisions.len();
        let entered_from = self.entered.len();
        self.entered.push(self.names.contract(id));
        // The memo keeps the labels received (shared with the caller's other `uses`); the steps
        // copy them if they change them.
        let inputs = (labels.clone(), placement.clone());
        let resolved =
            self.contract_steps(id, labels, placement, depth).map_err(|failure| failure.located(id, depth))?;
        // Every contract of the subtree, those of reused subtrees included.
        let mut entered = self.entered[entered_from..].to_vec();
        entered.sort_unstable();
        entered.dedup();
        self.memo.entry(id.to_string()).or_default().push(Memo {
            depth,
            labels: inputs.0,
            placement: inputs.1,
            resolved: resolved.clone(),
            entered,
            chain: start..self.decisions.len(),
        });
        Ok(resolved)
    }

    /// The earlier result of this contract with these inputs, unless the current path's stack
    /// holds a contract of its subtree (then resolving again reports the cycle).
    fn reuse(
        &self,
        id: &str,
        labels: &Arc<BTreeMap<String, Value>>,
        placement: Option<&Placement>,
        depth: usize,
    ) -> Option<(Resolved, std::ops::Range<usize>, Vec<Arc<str>>)> {
        let memo = self.memo.get(id)?.iter().find(|m| {
            m.depth == depth
                && m.placement.as_ref() == placement
                && (Arc::ptr_eq(&m.labels, labels) || *m.labels == **labels)
        })?;
        if memo.entered.iter().any(|c| self.stack.iter().any(|s| **c == **s)) {
            return None;
        }
        Some((memo.resolved.clone(), memo.chain.clone(), memo.entered.clone()))
    }

    /// The steps of §15.2, in order.
    fn contract_steps(
        &mut self,
        id: &str,
        mut labels: Arc<BTreeMap<String, Value>>,
        mut placement: Option<Placement>,
        depth: usize,
    ) -> Result<Resolved, Failure> {
        let program = self.program;
        let Some(contract) = program.contracts.get(id) else {
            return Err(Failure::failed(format!("contract `{id}` does not exist"), None));
        };
        if self.stack.iter().any(|c| c == id) || depth > MAX_DEPTH {
            let mut cycle = self.stack.clone();
            cycle.push(id.to_string());
            return Err(Failure::failed(
                format!("contracts form a cycle at run time: {}", cycle.join(" → ")),
                Some(&contract.origin),
            ));
        }
        self.decide(|run| Decision::EnterContract { contract: run.names.contract(id), depth });
        // 1. access
        let may_consume = self.access.may_consume(&self.subject, &contract.namespace);
        if let Some(reads) = self.reads {
            reads.note(Read::Consume(contract.namespace.clone()));
        }
        if !may_consume {
            if let Some(reads) = self.reads {
                // The reason names the consumer.
                reads.note(Read::User(crate::ir::UserField::Name));
            }
            return Err(Failure::failed(
                format!(
                    "`{}` may not consume in namespace `{}` (contract `{id}`)",
                    self.subject.name, contract.namespace
                ),
                Some(&contract.origin),
            ));
        }
        // 2. contract labels
        for op in &contract.ops {
            self.apply(op, &mut labels, placement.as_ref(), &contract.origin)?;
        }
        // 3. context
        let mut chosen = None;
        let names = self.names;
        for (context, context_names) in contract.contexts.iter().zip(names.contexts(id)) {
            let (name, origin) = &context_names.shared;
            let matched = match &context.criteria {
                None => true,
                Some(criteria) => self.env(&labels, placement.as_ref(), None, None).bool(criteria).map_err(|e| {
                    Failure::eval(e, &format!("the criteria of context `{}` of `{id}`", context.name), &context.origin)
                })?,
            };
            self.decide(|_| Decision::Context {
                contract: names.contract(id),
                context: name.clone(),
                matched,
                origin: origin.clone(),
            });
            if matched {
                chosen = Some((context, context_names));
                break;
            }
        }
        let Some((context, context_names)) = chosen else {
            // Every context was tried, and none matched.
            let tried: Vec<String> = contract.contexts.iter().map(|c| format!("`{}` = false", c.name)).collect();
            return Err(Failure::failed(
                format!("no context of contract `{id}` matched ({})", tried.join(", ")),
                Some(&contract.origin),
            ));
        };
        // 4. context labels
        for op in &context.ops {
            self.apply(op, &mut labels, placement.as_ref(), &context.origin)?;
        }
        // 5. rules: local, then global
        self.rules(&contract.namespace, &mut labels, &mut placement)?;
        // The labels are final: the `uses` below share them.
        // 6. placement
        let Some(placement) = placement else {
            let placing: Vec<&Arc<str>> = self
                .namespace_rules(&contract.namespace)
                .filter(|(rule, _)| rule.actions.iter().any(|action| matches!(action, Action::Place { .. })))
                .map(|(_, (rule_id, _))| rule_id)
                .collect();
            let considered = if placing.is_empty() {
                format!("no rule of namespace `{}` or `system` places anything", contract.namespace)
            } else {
                let rules: Vec<String> = placing.iter().map(|rule| format!("`{rule}`")).collect();
                format!("rules considered, none fired: {}", rules.join(", "))
            };
            return Err(Failure::failed(
                format!("no rule placed contract `{id}` on a cluster ({considered}; add a rule with `place on …`)"),
                Some(&contract.origin),
            ));
        };
        if !is_dns_label(&placement.namespace) {
            return Err(Failure::failed(
                format!("`{}` is not a valid Kubernetes namespace name", placement.namespace),
                Some(&context.origin),
            ));
        }
        self.decide(|_| Decision::Placement {
            cluster: placement.cluster.clone(),
            k8s_namespace: placement.namespace.clone(),
        });
        // 7. allocation keys
        let mut keys = Vec::new();
        for key in &context.allocate {
            let value = self.env(&labels, Some(&placement), None, None).eval(key).map_err(|e| {
                Failure::eval(e, &format!("an allocation key of context `{}`", context.name), &context.origin)
            })?;
            keys.push(value.to_string());
        }
        self.decide(|_| Decision::Allocation { keys: keys.clone() });
        // 8. the service instance
        let mut base = format!(
            "{}/{}/{id}/{}",
            placement.cluster.trim_start_matches("system."),
            placement.namespace,
            context.name
        );
        for key in &keys {
            base.push('/');
            base.push_str(&escape_key(key));
        }
        let (Some(service), Some(service_names)) =
            (program.services.get(&context.service), names.service(&context.service))
        else {
            return Err(Failure::failed(
                format!("service `{}` does not exist", context.service),
                Some(&context.origin),
            ));
        };
        self.stack.push(id.to_string());
        let label_json = self.label_json(&labels);
        let site = Site {
            contract: names.contract(id),
            context: context_names.shared.0.clone(),
            service: service_names.id.clone(),
            cluster: names.cluster(&placement.cluster),
            k8s_namespace: Arc::from(placement.namespace.as_str()),
            keys: Arc::from(keys),
            placement: &placement,
        };
        // 9. components, in dependency order
        let mut discovery: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
        let mut published: BTreeMap<String, Value> = BTreeMap::new();
        // The names of the components included so far, each key at its index in `edges`.
        let mut included_names: Vec<&str> = Vec::new();
        let mut edges = Vec::new();
        let components = service.components.iter().zip(&service_names.components).zip(&context_names.components);
        for ((component, shared), base_name) in components {
            let included = match &component.criteria {
                None => true,
                Some(criteria) => self.env(&labels, Some(&placement), None, None).bool(criteria).map_err(|e| {
                    Failure::eval(e, &format!("the `when` of component `{}`", component.name), &component.origin)
                })?,
            };
            // At its exact length: the key stays in the state, as the root's edge.
            let key = exactly(&[&base, "/"], &component.name);
            self.decide(|_| Decision::Component { key: key.clone(), included });
            if !included {
                continue;
            }
            let (instance, own) = self.component(
                component,
                shared,
                base_name,
                &key,
                &site,
                &labels,
                &mut discovery,
                depth,
                (&included_names, &edges),
            )?;
            // A service publishes what its components write in `discovery`, not what a `uses`
            // component receives (unless it re-exports it).
            published.extend(own);
            included_names.push(&component.name);
            edges.push(key);
            if let Some(instance) = instance {
                self.stage(instance, depth, &label_json)?;
            }
        }
        self.stack.pop();
        // The service instance's key is the base itself: no component name can collide with it.
        // (Grown by pushes, it had up to twice its length allocated; it stays in the state as an
        // edge of the `uses` component that reached it.)
        let mut root_key = base;
        root_key.shrink_to_fit();
        if self.passes(&root_key) {
            self.pass(&root_key, Value::Map(Vec::new()), &published)?;
        } else {
            let (name, id) = self.named(&context_names.root, &root_key);
            let root = Instance {
                name,
                id,
                ..instance(
                    &root_key,
                    InstanceKind::Service,
                    &site,
                    &names.root,
                    Value::Map(Vec::new()),
                    &published,
                    edges,
                )
            };
            self.stage(root, depth, &label_json)?;
        }
        Ok(Resolved { key: root_key, published })
    }

    #[allow(clippy::too_many_arguments)]
    fn component(
        &mut self,
        component: &Component,
        // Its name and kind, shared.
        (component_name, kind): &(Arc<str>, InstanceKind),
        // The base of its instance's name.
        base_name: &str,
        key: &str,
        site: &Site,
        labels: &Arc<BTreeMap<String, Value>>,
        // The discovery of the components before it; it adds its own entry: what it receives while
        // it evaluates, then what siblings see.
        discovery: &mut BTreeMap<String, BTreeMap<String, Value>>,
        depth: usize,
        // The components of its service included before it, and their keys.
        (included, keys): (&[&str], &[String]),
    ) -> Result<ComponentResult, Failure> {
        let (name, id) = self.named(base_name, key);
        let mut edges: Vec<String> = component
            .after
            .iter()
            .filter_map(|dep| included.iter().position(|n| n == dep).and_then(|i| keys.get(i).cloned()))
            .collect();
        let mut received = BTreeMap::new();
        if let Source::Uses { contract: used } = &component.source {
            let child = self.contract(used, labels.clone(), Some(site.placement.clone()), depth + 1)?;
            edges.push(child.key);
            received = child.published;
        }
        let mut kind = kind.clone();
        // Within its own discovery map, a `uses` component reads what it receives (an entry of its
        // own name, not a copy of the map: the names of a service's components are unique).
        discovery.insert(component.name.clone(), received);
        let none = BTreeMap::new();
        let received = discovery.get(&component.name).unwrap_or(&none);
        let env = self.env(labels, Some(site.placement), Some((&name, &id)), Some(&*discovery));
        let mut values = Vec::new();
        for (k, v) in &component.values {
            let k = env.render(k).map_err(|e| {
                Failure::eval(e, &format!("a value key of component `{}`", component.name), &component.origin)
            })?;
            let v = env.eval(v).map_err(|e| {
                Failure::eval(e, &format!("value `{k}` of component `{}`", component.name), &component.origin)
            })?;
            if values.iter().any(|(existing, _)| *existing == k) {
                return Err(Failure::failed(
                    format!("two values of component `{}` have the key `{k}`", component.name),
                    Some(&component.origin),
                ));
            }
            values.push((k, v));
        }
        let mut own = BTreeMap::new();
        for (k, v) in &component.discovery {
            if received.contains_key(k) {
                return Err(Failure::failed(
                    format!(
                        "component `{}` publishes `{k}`, which it also receives from its contract: rename one",
                        component.name
                    ),
                    Some(&component.origin),
                ));
            }
            let v = env.eval(v).map_err(|e| {
                Failure::eval(e, &format!("discovery `{k}` of component `{}`", component.name), &component.origin)
            })?;
            own.insert(k.clone(), v);
        }
        // Manifest templates read the values too (§15.2 step 9.3).
        let env = Env { values: Some(&values), ..env };
        if let (InstanceKind::Manifests { files, .. }, Source::Manifests { templates, .. }) =
            (&mut kind, &component.source)
        {
            for manifest in templates {
                let text = env.render_manifest(&manifest.template).map_err(|e| {
                    let at = format!("manifest `{}` of component `{}`", manifest.path, component.name);
                    Failure::eval(e, &at, &component.origin)
                })?;
                files.push(RenderedFile { path: manifest.path.clone(), text });
            }
        }
        // What siblings read as `C.discovery`: what it receives and what it writes, in its entry.
        let mut visible = discovery.get_mut(&component.name);
        if let Some(visible) = visible.as_deref_mut() {
            visible.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        let visible = visible.map_or(&none, |visible| &*visible);
        if self.passes(key) {
            self.pass(key, Value::Map(values), visible)?;
            return Ok((None, own));
        }
        let instance =
            Instance { name, id, ..instance(key, kind, site, component_name, Value::Map(values), visible, edges) };
        Ok((Some(instance), own))
    }

    /// Whether instance `key` is past the claim's cut ([`ClaimRun::cut`]) and not staged before
    /// the cut came: then it is kept as its values ([`ClaimRun::pass`]) instead of built.
    fn passes(&self, key: &str) -> bool {
        self.cut.as_deref().is_some_and(|cut| key > cut) && !self.staged.contains_key(key)
    }

    /// Keeps an instance past the cut as its values and discovery. Reached again, it must compute
    /// the same, as [`ClaimRun::stage`] checks of a staged one (§15.5, within a claim).
    fn pass(&mut self, key: &str, values: Value, discovery: &BTreeMap<String, Value>) -> Result<(), Failure> {
        let Some((first_values, first_discovery)) = self.passed.get(key) else {
            self.passed.insert(key.to_string(), (values, discovery.clone()));
            return Ok(());
        };
        if *first_values == values && first_discovery == discovery {
            return Ok(());
        }
        // Unequal values can still give equal JSON (a map that repeats a key): compare as staged.
        let diffs = value_differences(
            (&first_values.to_json(), &discovery_json(first_discovery)),
            (&values.into_json(), &discovery_json(discovery)),
        );
        if diffs.is_empty() { Ok(()) } else { Err(reached_twice(key, &diffs)) }
    }

    /// Adds an instance for this claim. Reaching one key twice in one claim gives one instance,
    /// and both paths must compute the same values (§15.5, within a claim).
    fn stage(
        &mut self,
        mut instance: Instance,
        depth: usize,
        labels: &Arc<BTreeMap<String, serde_json::Value>>,
    ) -> Result<(), Failure> {
        let used = ClaimUse { claim: self.claim_id.to_string(), depth, labels: labels.clone() };
        // One look-up of the key (long, sharing long prefixes with its neighbours).
        match self.staged.entry(instance.key.clone()) {
            std::collections::btree_map::Entry::Occupied(mut existing) => {
                let existing = existing.get_mut();
                let diffs = differences(existing, &instance);
                if !diffs.is_empty() {
                    return Err(reached_twice(&instance.key, &diffs));
                }
                union_edges(&mut existing.edges, instance.edges);
                if !existing.claims.iter().any(|c| c.depth == depth) {
                    existing.claims.push(used);
                }
            }
            std::collections::btree_map::Entry::Vacant(vacant) => {
                instance.claims.push(used);
                let instance = vacant.insert(Box::new(instance));
                let conflicts = self
                    .fixed
                    .and_then(|fixed| fixed.instances.get(&instance.key))
                    .is_some_and(|existing| !same_values(existing, instance));
                if conflicts && self.cut.as_ref().is_none_or(|cut| instance.key < *cut) {
                    self.cut = Some(instance.key.clone());
                }
            }
        }
        Ok(())
    }

    /// The rules a contract of `namespace` goes through, in order: its namespace's, then the
    /// global ones; with their shared ids and origins.
    fn namespace_rules(&self, namespace: &str) -> impl Iterator<Item = (&'a crate::ir::Rule, &'a Shared)> + use<'a> {
        let (program, names) = (self.program, self.names);
        let local = if namespace == SYSTEM_NAMESPACE { None } else { program.rules.get_key_value(namespace) };
        let global = program.rules.get_key_value(SYSTEM_NAMESPACE);
        local.into_iter().chain(global).flat_map(move |(ns, rules)| rules.iter().zip(names.rules(ns)))
    }

    fn rules(
        &mut self,
        namespace: &str,
        labels: &mut Arc<BTreeMap<String, Value>>,
        placement: &mut Option<Placement>,
    ) -> Result<(), Failure> {
        let program = self.program;
        for (rule, (rule_id, shared_origin)) in self.namespace_rules(namespace) {
            let fired = match &rule.criteria {
                None => true,
                Some(criteria) => self
                    .env(labels, placement.as_ref(), None, None)
                    .bool(criteria)
                    .map_err(|e| Failure::eval(e, &format!("the criteria of rule `{rule_id}`"), &rule.origin))?,
            };
            let mut effect = Vec::new();
            if fired {
                for action in &rule.actions {
                    match action {
                        Action::Label(op) => effect.extend(self.apply(op, labels, placement.as_ref(), &rule.origin)?),
                        Action::Reject { message } => {
                            let message =
                                self.env(labels, placement.as_ref(), None, None).render(message).map_err(|e| {
                                    Failure::eval(e, &format!("the message of rule `{rule_id}`"), &rule.origin)
                                })?;
                            effect.push(format!("reject: {message}"));
                            self.decide(|_| Decision::Rule {
                                rule: rule_id.clone(),
                                fired,
                                effect,
                                origin: shared_origin.clone(),
                            });
                            return Err(Failure {
                                status: Status::Rejected,
                                reason: format!("rejected by rule `{rule_id}`: {message}"),
                                origin: Some(rule.origin.clone()),
                                conflict: None,
                                // The rule and its line say where; at depth 1+ the contract too.
                                located: false,
                            });
                        }
                        Action::Place { cluster, namespace } => {
                            let k8s = match namespace {
                                Some(expr) => self
                                    .env(labels, placement.as_ref(), None, None)
                                    .eval(expr)
                                    .map_err(|e| {
                                        Failure::eval(e, &format!("the namespace of rule `{rule_id}`"), &rule.origin)
                                    })?
                                    .to_string(),
                                None => program
                                    .clusters
                                    .get(cluster)
                                    .and_then(|c| c.namespace.clone())
                                    .unwrap_or_else(|| "default".to_string()),
                            };
                            if self.keeps_chain {
                                effect.push(format!("place on {cluster} namespace {k8s}"));
                            }
                            *placement = Some(Placement { cluster: cluster.clone(), namespace: k8s });
                        }
                    }
                }
            }
            self.decide(|_| Decision::Rule { rule: rule_id.clone(), fired, effect, origin: shared_origin.clone() });
        }
        Ok(())
    }
}

/// How a claim that computes instance `key` differently on two paths fails, by `diffs`
/// ([`differences`]).
fn reached_twice(key: &str, diffs: &str) -> Failure {
    Failure::failed(format!("the claim reaches instance `{key}` twice with different values: {diffs}"), None)
}

/// A discovery map as an instance holds it.
fn discovery_json(discovery: &BTreeMap<String, Value>) -> serde_json::Value {
    serde_json::Value::Object(discovery.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
}

/// An instance without its name and id (the caller names it: [`ClaimRun::named`]).
fn instance(
    key: &str,
    kind: InstanceKind,
    site: &Site,
    component: &Arc<str>,
    values: Value,
    discovery: &BTreeMap<String, Value>,
    edges: Vec<String>,
) -> Instance {
    Instance {
        key: key.to_string(),
        name: String::new(),
        id: String::new(),
        kind,
        cluster: site.cluster.clone(),
        k8s_namespace: site.k8s_namespace.clone(),
        contract: site.contract.clone(),
        context: site.context.clone(),
        service: site.service.clone(),
        component: component.clone(),
        allocation: site.keys.clone(),
        values: values.into_json(),
        discovery: discovery_json(discovery),
        edges,
        claims: Vec::new(),
    }
}

/// Checks a claim's staged instances against those earlier claims fixed (§15.5): the first
/// conflict in key order fails the claim.
fn merge_check(state: &DesiredState, staged: &Staged) -> Result<(), Failure> {
    for (key, instance) in staged {
        let Some(existing) = state.instances.get(key) else { continue };
        if let Some(failure) = conflict(existing, instance) {
            return Err(failure);
        }
    }
    Ok(())
}

/// A claim's run checked, on the worker that resolved it, against `fixed`: the instances the
/// chunks before its own fixed. They do not change while its chunk resolves (a later claim only
/// adds its use of them), so the first conflict with one of them, in key order, is the claim's
/// unless an instance an earlier claim of its own chunk adds conflicts before it: `staged` keeps
/// only those candidates (keys before the conflict that `fixed` lacks) for [`Merging::claim`] to
/// check, and the rest is dropped here, on the thread that allocated it. A claim whose own
/// resolution failed never merges, so its staged instances are dropped here too. (On Aptomi's
/// engine shape 93% of claims conflict on a shared instance: freeing their trees on the merging
/// thread, across threads, was a fifth of the CPU.)
fn settle(fixed: &DesiredState, result: &Result<String, Failure>, staged: &mut Staged) -> Option<Failure> {
    if result.is_err() {
        *staged = Staged::new();
        return None;
    }
    let found = fixed_conflict(fixed, staged)?;
    found.keep_candidates(staged);
    Some(found.failure)
}

/// The first of a claim's staged instances, in key order, that conflicts with one the chunks
/// before its own fixed ([`fixed_conflict`]), and what [`settle`] keeps besides.
struct FixedConflict {
    /// Its position among the staged instances, in key order.
    at: usize,
    failure: Failure,
    /// The positions before `at` of the staged instances `fixed` lacks, in order: the only ones
    /// that can still conflict before it at the merge (an earlier claim of the chunk may add
    /// them). Found by the one lookup per key that looked for the conflict.
    candidates: Vec<usize>,
}

impl FixedConflict {
    /// Whether the staged instance at `position` can still conflict before this one.
    fn is_candidate(&self, position: usize) -> bool {
        self.candidates.binary_search(&position).is_ok()
    }

    /// Drops every staged instance but the candidates (the conflicting one too).
    fn keep_candidates(&self, staged: &mut Staged) {
        if self.candidates.is_empty() {
            *staged = Staged::new();
        } else {
            let all = std::mem::take(staged);
            *staged =
                all.into_iter().enumerate().filter(|(at, _)| self.is_candidate(*at)).map(|(_, kept)| kept).collect();
        }
    }
}

/// The first of `staged`'s instances, in key order, that conflicts with one `fixed` holds, with
/// the candidates before it (see [`FixedConflict`]).
fn fixed_conflict(fixed: &DesiredState, staged: &Staged) -> Option<FixedConflict> {
    let (found, candidates) = first_fixed_conflict(fixed, staged, |_| true, usize::MAX);
    found.map(|found| FixedConflict {
        at: found.at,
        failure: conflict_failure(found.key, first_claim(found.existing), &found.diffs),
        candidates,
    })
}

/// The first instance `fixed` holds with other values, found by [`first_fixed_conflict`].
struct FirstConflict<'s> {
    /// Its position among the staged instances, in key order.
    at: usize,
    key: &'s str,
    /// The instance an earlier claim fixed.
    existing: &'s Instance,
    /// What differs ([`differences`]).
    diffs: String,
}

/// Walks `staged` in key order against `fixed`, looking at the positions `look` lets through
/// before position `stop`: the first conflict, and the positions looked at before it that
/// `fixed` lacks. [`fixed_conflict`] looks at every position; a class's template looks again
/// only at those that were not fixed the last time (`classes::Checked`).
fn first_fixed_conflict<'s>(
    fixed: &'s DesiredState,
    staged: &'s Staged,
    look: impl Fn(usize) -> bool,
    stop: usize,
) -> (Option<FirstConflict<'s>>, Vec<usize>) {
    let mut unfixed = Vec::new();
    for (at, (key, instance)) in staged.iter().enumerate().take(stop) {
        if !look(at) {
            continue;
        }
        match fixed.instances.get(key) {
            None => unfixed.push(at),
            Some(existing) => {
                // Most claims that reach a shared instance agree with it: equal is cheap.
                let diffs = differences(existing, instance);
                if !diffs.is_empty() {
                    return (Some(FirstConflict { at, key, existing, diffs }), unfixed);
                }
            }
        }
    }
    (None, unfixed)
}

/// The conflict of a claim's `instance` with the `existing` one an earlier claim fixed, if their
/// values or discovery differ (§15.5).
fn conflict(existing: &Instance, instance: &Instance) -> Option<Failure> {
    // Most claims that reach a shared instance agree with it: `differences` tells equal cheaply.
    let diffs = differences(existing, instance);
    if diffs.is_empty() {
        return None;
    }
    Some(conflict_failure(&instance.key, first_claim(existing), &diffs))
}

/// The claim that fixed `existing` (its first use, which later claims never displace).
fn first_claim(existing: &Instance) -> &str {
    existing.claims.first().map_or("", |c| c.claim.as_str())
}

/// A claim's failure on conflicting with instance `key`, which claim `earlier` fixed first, by
/// `diffs` ([`differences`]); and what the note the earlier claim gets says after the claim (the
/// merge, which knows the claim, makes the note).
fn conflict_failure(key: &str, earlier: &str, diffs: &str) -> Failure {
    let reason =
        ["conflict on shared instance `", key, "`: claim `", earlier, "` fixed it first; this claim computes "];
    Failure {
        status: Status::Failed,
        reason: exactly(&reason, diffs),
        origin: None,
        conflict: Some((earlier.to_string(), ConflictNote::about(key, diffs))),
        located: true,
    }
}

/// `parts` then `last`, in a string of exactly their length, for text the state keeps (a
/// conflict's reason and its note's text, one each per conflicting claim: most of the engine
/// shape's claims; instance keys): `format!` grows its string by doubling, which left up to
/// twice the text's size allocated.
fn exactly(parts: &[&str], last: &str) -> String {
    let mut text = String::with_capacity(parts.iter().map(|part| part.len()).sum::<usize>() + last.len());
    parts.iter().for_each(|part| text.push_str(part));
    text.push_str(last);
    text
}

/// What differs between two instances of one key, as "`key`: old vs new" per entry of their
/// values, then "discovery `key`: old vs new" per entry of their discovery, joined by ", ";
/// empty if nothing does (equal instances, the usual case, cost a comparison).
fn differences(a: &Instance, b: &Instance) -> String {
    value_differences((&a.values, &a.discovery), (&b.values, &b.discovery))
}

/// [`differences`] of two instances' values and discovery.
fn value_differences(
    (a_values, a_discovery): (&serde_json::Value, &serde_json::Value),
    (b_values, b_discovery): (&serde_json::Value, &serde_json::Value),
) -> String {
    let mut diffs = String::new();
    if a_values != b_values || a_discovery != b_discovery {
        entry_differences(&mut diffs, "", a_values, b_values);
        entry_differences(&mut diffs, "discovery ", a_discovery, b_discovery);
    }
    diffs
}

/// Whether two instances of one key agree on what §15.5 compares: their values and discovery.
fn same_values(a: &Instance, b: &Instance) -> bool {
    a.values == b.values && a.discovery == b.discovery
}

/// Appends to `out` the entries that differ between two JSON maps, in key order, each as
/// "{prefix}`key`: old vs new" and after a ", " unless `out` was empty. The maps are sorted
/// (`serde_json` without `preserve_order`), so one walk of both pairs their keys.
fn entry_differences(out: &mut String, prefix: &str, a: &serde_json::Value, b: &serde_json::Value) {
    use itertools::{EitherOrBoth, Itertools};
    use std::fmt::Write;
    let entry = |out: &mut String, args: std::fmt::Arguments| {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(prefix);
        // Writing to a `String` cannot fail.
        let _ = out.write_fmt(args);
    };
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        entry(out, format_args!("{a} vs {b}"));
        return;
    };
    for pair in a.iter().merge_join_by(b, |(key, _), (other, _)| key.cmp(other)) {
        let (key, old, new) = match pair {
            EitherOrBoth::Both((key, old), (_, new)) => (key, Some(old), Some(new)),
            EitherOrBoth::Left((key, old)) => (key, Some(old), None),
            EitherOrBoth::Right((key, new)) => (key, None, Some(new)),
        };
        if old != new {
            entry(out, format_args!("`{key}`: {} vs {}", Shown(old), Shown(new)));
        }
    }
}

/// A value of [`differences`]: its JSON, or `(none)`.
struct Shown<'v>(Option<&'v serde_json::Value>);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(value) => write!(f, "{value}"),
            None => f.write_str("(none)"),
        }
    }
}

/// Adds the edges `more` has and `edges` lacks, keeping order.
fn union_edges(edges: &mut Vec<String>, more: Vec<String>) {
    for edge in more {
        if !edges.contains(&edge) {
            edges.push(edge);
        }
    }
}

/// An allocation key as one segment of an instance key: `/` and `%` are escaped, so keys
/// `("a/b", "c")` and `("a", "b/c")` never meet.
fn escape_key(key: &str) -> String {
    key.replace('%', "%25").replace('/', "%2F")
}

fn merge(state: &mut DesiredState, labels: &mut LabelSets, mut staged: Staged) {
    labels.share_uses(&mut staged);
    for (key, mut instance) in staged {
        match state.instances.get_mut(&key) {
            Some(existing) => {
                existing.claims.extend(instance.claims);
                union_edges(&mut existing.edges, instance.edges);
            }
            None => {
                // Most instances keep the one use and the few edges they were staged with, and a
                // `Vec` pushed to holds four (160 bytes of uses where one takes 40).
                instance.claims.shrink_to_fit();
                instance.edges.shrink_to_fit();
                state.instances.insert(key, instance);
            }
        }
    }
}

/// Instance names held (§5.8): per cluster, per Kubernetes namespace, each name and the key of the
/// instance holding it. Clusters and namespaces are the instances' shared strings (`Arc<str>`), so
/// an instance taking a name copies its name and key only, and a name is looked up by `&str`.
#[derive(Default)]
struct TakenNames(FastMap<Arc<str>, FastMap<Arc<str>, NamesHeld>>);

/// The names held in one Kubernetes namespace of a cluster, each with the key of its instance.
type NamesHeld = FastMap<Box<str>, Box<str>>;

impl TakenNames {
    /// Deployed instances hold their names before any claim resolves: a new instance can never
    /// take a running one's name, whatever order claims resolve in (§5.8).
    fn of(deployed: &DeployedNames) -> TakenNames {
        let mut taken = TakenNames::default();
        for (key, d) in deployed {
            taken.insert(&Arc::from(d.cluster.as_str()), &Arc::from(d.k8s_namespace.as_str()), &d.name, key);
        }
        taken
    }

    /// The key of the instance holding `name` in Kubernetes namespace `k8s_namespace` of `cluster`.
    fn holder(&self, cluster: &str, k8s_namespace: &str, name: &str) -> Option<&str> {
        self.0.get(cluster)?.get(k8s_namespace)?.get(name).map(|key| &**key)
    }

    fn insert(&mut self, cluster: &Arc<str>, k8s_namespace: &Arc<str>, name: &str, key: &str) {
        let names = match self.0.get_mut(&**cluster) {
            Some(names) => names,
            None => self.0.entry(cluster.clone()).or_default(),
        };
        let names = match names.get_mut(&**k8s_namespace) {
            Some(names) => names,
            None => names.entry(k8s_namespace.clone()).or_default(),
        };
        names.insert(Box::from(name), Box::from(key));
    }

    /// Frees `name` in Kubernetes namespace `k8s_namespace` of `cluster`.
    fn release(&mut self, cluster: &str, k8s_namespace: &str, name: &str) {
        if let Some(names) = self.0.get_mut(cluster).and_then(|names| names.get_mut(k8s_namespace)) {
            names.remove(name);
        }
    }

    /// Takes the names of a claim's new instances, unless one is another instance's in its
    /// Kubernetes namespace: then the claim fails and the other instance keeps its name. With 120
    /// bits of hash this should never happen by chance; if it does, it is an error, never two
    /// instances on one Helm release.
    fn take(&mut self, state: &DesiredState, staged: &Staged, claim: &str) -> Result<(), Failure> {
        self.take_new(staged.iter().filter(|(key, _)| !state.instances.contains_key(*key)), claim)
    }

    /// [`TakenNames::take`] given the claim's new instances (in key order) rather than the state:
    /// `Incremental` knows which instances existed at a claim's place without that state.
    fn take_new<'s>(
        &mut self,
        new: impl Iterator<Item = (&'s String, &'s Box<Instance>)>,
        claim: &str,
    ) -> Result<(), Failure> {
        let mut taken: Vec<&Instance> = Vec::new();
        for (key, instance) in new {
            match self.holder(&instance.cluster, &instance.k8s_namespace, &instance.name) {
                Some(other) if other != key => {
                    let reason = format!(
                        "instance `{key}` would be named `{}`, the name instance `{other}` holds in Kubernetes namespace `{}` of cluster `{}`: claim `{claim}` cannot resolve",
                        instance.name, instance.k8s_namespace, instance.cluster
                    );
                    for instance in taken {
                        self.release(&instance.cluster, &instance.k8s_namespace, &instance.name);
                    }
                    return Err(Failure {
                        status: Status::Failed,
                        reason,
                        origin: None,
                        conflict: None,
                        located: true,
                    });
                }
                Some(_) => {}
                None => {
                    self.insert(&instance.cluster, &instance.k8s_namespace, &instance.name, key);
                    taken.push(instance);
                }
            }
        }
        Ok(())
    }
}

/// Characters of an instance id: 24 base32 characters, 120 bits of SHA-256 of the instance key,
/// so no consumer can pick allocation keys whose instances share a name (a 40-bit hash can be
/// collided on a laptop).
const ID_CHARS: usize = 24;

/// The longest name: a Helm release name has at most 53 characters (Kubernetes labels 63).
const NAME_MAX: usize = 53;

/// A stable name and id for an instance key (docs/language.md §5.8): the name is a DNS-1035 label
/// (a lowercase letter first, then lowercase letters, digits and inner `-`: valid for Services,
/// Helm releases and label values) whatever identifiers the contract and component have.
pub fn instance_name(contract: &str, component: &str, key: &str) -> (String, String) {
    name_with_base(&name_base(contract, component), key)
}

/// The part of an instance's name before its id: a function of the contract and component only,
/// so the resolver makes it once per contract's context ([`ContextNames`]), not per instance.
fn name_base(contract: &str, component: &str) -> Box<str> {
    let contract_name = contract.rsplit('.').next().unwrap_or(contract);
    let mut base = String::new();
    for c in format!("{contract_name}-{component}").chars() {
        if c.is_ascii_alphanumeric() {
            base.push(c.to_ascii_lowercase());
        } else if !base.is_empty() && !base.ends_with('-') {
            base.push('-');
        }
    }
    if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
        base.insert_str(0, "i-");
    }
    base.truncate(NAME_MAX - ID_CHARS - 1);
    Box::from(base.trim_end_matches('-'))
}

/// The name (`base`, then `-` and the id) and id of instance `key`: [`instance_name`] given its
/// [`name_base`]. The id is encoded into the name, and each string allocated once, at its length.
fn name_with_base(base: &str, key: &str) -> (String, String) {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut name = String::with_capacity(base.len() + 1 + ID_CHARS);
    name.push_str(base);
    name.push('-');
    let id_at = name.len();
    data_encoding::BASE32_NOPAD.encode_append(&digest[..ID_CHARS * 5 / 8], &mut name);
    // Lowercased in place (collecting it as `char`s was 1.3% of `plan`'s instructions).
    name[id_at..].make_ascii_lowercase();
    let id = name[id_at..].to_string();
    (name, id)
}

/// Whether `name` is a valid Kubernetes namespace name (a DNS-1123 label); the engine's lints
/// prove placements against the same test.
pub(crate) fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_names_are_stable_dns_labels() {
        let (name, id) = instance_name(
            "analytics.pipeline",
            "spark_master",
            "us_west/dev/analytics.pipeline/dev/alice/spark_master",
        );
        assert_eq!(id.len(), ID_CHARS);
        assert!(name.starts_with("pipeline-spark-master-"), "{name}");
        assert!(is_dns_label(&name) && name.len() <= NAME_MAX, "{name}");
        assert_eq!(
            instance_name(
                "analytics.pipeline",
                "spark_master",
                "us_west/dev/analytics.pipeline/dev/alice/spark_master"
            )
            .0,
            name
        );
        let (long, _) =
            instance_name("ns.a_very_long_contract_name_that_goes_on", "and_a_long_component_name_too", "k");
        assert!(long.len() <= NAME_MAX && is_dns_label(&long), "{long}");
        assert!(instance_name("ns._", "_", "k").0.starts_with("i-"));
    }

    #[test]
    fn the_keys_that_collided_under_a_40_bit_hash_do_not() {
        let a = instance_name("ns.c", "web", "local/default/ns.c/dev/kf1242/web");
        let b = instance_name("ns.c", "web", "local/default/ns.c/dev/k30fa23/web");
        assert_ne!(a, b);
    }

    proptest::proptest! {
        /// Any identifiers the language accepts (and more) give a DNS-1035 label within 53.
        #[test]
        fn every_name_is_a_kubernetes_name(
            contract in "[A-Za-z_][A-Za-z0-9_]{0,70}",
            component in "[A-Za-z_][A-Za-z0-9_]{0,70}",
            key in ".*",
        ) {
            let (name, id) = instance_name(&format!("ns.{contract}"), &component, &key);
            proptest::prop_assert!(is_dns_label(&name) && name.len() <= NAME_MAX, "{}", name);
            proptest::prop_assert!(name.starts_with(|c: char| c.is_ascii_lowercase()), "{}", name);
            proptest::prop_assert!(is_dns_label(&id), "{}", id);
        }
    }
}
