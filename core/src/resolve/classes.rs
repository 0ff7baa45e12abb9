//! Claims alike in everything their resolution reads, resolved once (issue #11).
//!
//! A claim's resolution is a function of its contract, its labels, and what its expressions and
//! access checks read of its consumer and of itself (`user.*`, `claim.*`, `may_consume`). Labels
//! the program never reads nor writes only pass through: every label map of the resolution holds
//! them as the claim has them. So claims of one contract whose labels agree on the labels the
//! program can read or write (the *projection*, found once over the IR) and whose consumers and
//! claims agree on the fields the first one's resolution read give the same result but for the
//! claim id of each use and the passing labels of each label map: the first resolves, the others
//! take its result, rebased. On Aptomi's engine shape most claims of a contract share a handful
//! of label combinations, and `user.name` is read only where a context allocates per user.
//!
//! Only resolutions that keep no decision chain go through here ([`super::Chains::None`]): a chain
//! is per claim, and `explain` recomputes the chains it shows.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, OnceLock};

use crate::access::Access;
use crate::eval::{Atomic, EvalError, Observer, Subject};
use crate::ir::{Claim, ClaimField, Consumer, Program, UserField, Value};
use crate::{FastMap, FastSet};

use super::{
    ClaimRun, ClaimRunResult, DeployedNames, DesiredState, Failure, FixedConflict, Instance, LabelJson, Names, Staged,
    conflict_failure, consumer, first_claim, first_fixed_conflict, fixed_conflict, missing_consumer,
};

/// A class: the claimed contract and the claim's labels in the projection.
type Class = (Arc<str>, Vec<(String, Value)>);

/// Labels of a claim in the projection (or outside it), in label order.
type Projected<'l> = Vec<(&'l String, &'l Value)>;

/// Each class's resolutions, and how many of each class's claims have not resolved yet.
#[derive(Default)]
struct ByClass {
    by_class: FastMap<Class, Vec<Arc<Entry>>>,
    /// By class (its [`Share`] without a consumer): a class's entries are dropped once its last
    /// claim has resolved (28,353 classes at 100,000 claims on the engine shape, most with one
    /// claim, each entry holding its reads, its result and maybe a template).
    left: FastMap<Share, usize>,
}

/// A class, and a claim's consumer (`user NAME`, `team NAME`) or none, as a 64-bit hash: a
/// copy of the class per claim and consumer cost ~80 MiB at 100,000 claims. Two keys sharing a
/// hash would only keep a template that is not needed, or leave it to a class's second claim: the
/// counts decide what is kept, never what a claim resolves to.
type Share = u64;

/// A claim's [`Share`]s: of its class, and of its class with its consumer.
#[derive(Clone, Copy)]
struct Shares {
    of_class: Share,
    of_consumer: Share,
}

/// The claims of one resolution resolved so far, by class: contract and projected labels.
pub(super) struct Classes {
    /// The labels the program can read or write (anywhere: contracts, contexts, rules, services).
    projection: FastSet<String>,
    /// Each class's resolutions, told apart by what they read of the consumer and the claim.
    entries: Mutex<ByClass>,
    /// How many claims each class has, and each class with each consumer: a class's first claim
    /// keeps its instances only if another claim may take them (see [`Classes::may_share`]).
    counts: FastMap<Share, usize>,
    /// Hashes the keys of `counts` the same way in every run.
    share: foldhash::fast::FixedState,
    /// Each claim's consumer as expressions see it (`None`: it does not exist), made once: a
    /// few hundred users for thousands of claims.
    consumers: FastMap<Consumer, Option<Subject>>,
}

/// One claim's resolution, kept for the claims that agree with it on all it read.
struct Entry {
    /// What it read of the consumer and the claim, and what it found.
    reads: Vec<(Read, Option<Value>)>,
    result: Result<String, Failure>,
    /// The instances of a resolved class: those its first claim conflicts on (a few), else all
    /// up to the first conflict, kept once a second claim of the class comes (on the engine
    /// shape most classes of `dev` contexts, one per user, have a single claim, and keeping their
    /// instances would only cost memory).
    template: OnceLock<Template>,
}

/// A class's instances as one of its claims staged them.
struct Template {
    /// Those that can matter to a later claim of the class: up to the first that conflicts with
    /// an instance fixed before (instances fixed never change, so a later claim's first conflict
    /// is at that key or before). Kept by the first claim when it conflicts, then only the
    /// instances that conflict or may (see [`settle_first`]); else by the second.
    staged: Staged,
    /// That claim's labels outside the projection, which every label map of `staged` holds.
    passing: BTreeMap<String, serde_json::Value>,
    /// What `staged` was last found to do against the instances fixed (`None`: not yet), so
    /// that each class-mate looks again only at what may have changed since.
    checked: Mutex<Option<Checked>>,
}

/// A template's instances checked against the instances fixed at some point of the resolution.
/// Instances fixed never change (a later claim only adds its use and edges) and never go away,
/// so an instance found equal to a fixed one stays equal and a conflict found stays: a later
/// check looks up only the instances that were not fixed yet. (At 100,000 claims of the engine
/// shape, 70,000 class-mates each looked up and compared their template's every instance.)
struct Checked {
    /// The first instance in key order that conflicts with a fixed one: its position, its key,
    /// the claim that fixed it and the differences ([`super::differences`]).
    conflict: Option<(usize, String, String, String)>,
    /// The positions, before the conflict (all without one), of the instances not fixed then.
    unfixed: Vec<usize>,
}

impl Template {
    fn new(staged: Staged, passing: BTreeMap<String, serde_json::Value>) -> Template {
        Template { staged, passing, checked: Mutex::new(None) }
    }

    /// What [`fixed_conflict`] finds for the template's staged instances, found from the
    /// last check (see [`Checked`]).
    fn fixed_conflict(&self, fixed: &DesiredState) -> Option<FixedConflict> {
        let mut checked = self.checked.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let last = checked.take();
        let (found, unfixed) = match &last {
            None => first_fixed_conflict(fixed, &self.staged, |_| true, usize::MAX),
            // Positions fixed and equal at the last check stay so; nothing after its conflict counts.
            Some(last) => {
                let stop = last.conflict.as_ref().map_or(usize::MAX, |(at, ..)| *at);
                first_fixed_conflict(fixed, &self.staged, |at| last.unfixed.binary_search(&at).is_ok(), stop)
            }
        };
        let conflict =
            found.map(|found| (found.at, found.key.to_string(), first_claim(found.existing).to_string(), found.diffs));
        let now = Checked { conflict: conflict.or_else(|| last.and_then(|last| last.conflict)), unfixed };
        let found = now.conflict.as_ref().map(|(at, key, earlier, diffs)| FixedConflict {
            at: *at,
            failure: conflict_failure(key, earlier, diffs),
            candidates: now.unfixed.clone(),
        });
        *checked = Some(now);
        found
    }
}

/// Something a resolution read besides the labels.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Read {
    User(UserField),
    Claim(ClaimField),
    /// Whether the consumer may consume in this namespace.
    Consume(String),
}

impl Read {
    /// What `claim` (with consumer `subject`) gives for this read.
    fn of(&self, access: &Access, subject: &Subject, claim: &Claim) -> Option<Value> {
        let text = |s: &str| Some(Value::Str(s.to_string()));
        match self {
            Read::User(UserField::Name) => text(&subject.name),
            Read::User(UserField::Team) => subject.team.as_deref().and_then(text),
            Read::User(UserField::Groups) => {
                Some(Value::List(subject.groups.iter().cloned().map(Value::Str).collect()))
            }
            Read::User(UserField::Label(id)) => subject.labels.get(id).cloned(),
            Read::Claim(ClaimField::Name) => text(&claim.name),
            Read::Claim(ClaimField::Namespace) => text(&claim.namespace),
            Read::Claim(ClaimField::Id) => Some(Value::Str(claim.id())),
            Read::Consume(namespace) => Some(Value::Bool(access.may_consume(subject, namespace))),
        }
    }
}

/// Records what one claim's run reads of its consumer and claim (an evaluator [`Observer`] that
/// ignores the labels, plus the access checks the run notes).
#[derive(Default)]
pub(super) struct Recorder(Mutex<Vec<Read>>);

impl Recorder {
    pub(super) fn note(&self, read: Read) {
        let mut reads = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !reads.contains(&read) {
            reads.push(read);
        }
    }

    fn into_reads(self) -> Vec<Read> {
        self.0.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Observer for Recorder {
    fn read(&self, _: &str, _: Option<&Value>) {}
    fn test(&self, _: &str, _: Option<&Value>, _: Atomic<'_>, _: &Result<bool, EvalError>) {}
    fn user(&self, field: &UserField) {
        self.note(Read::User(field.clone()));
    }
    fn claim(&self, field: ClaimField) {
        self.note(Read::Claim(field));
    }
}

impl Classes {
    /// The classes of `claims`, to be resolved against `program`; `None` if its labels cannot be
    /// projected (then every claim resolves on its own).
    pub(super) fn new<'c>(
        program: &Program,
        claims: impl Iterator<Item = &'c Claim>,
        access: &Access,
    ) -> Option<Classes> {
        let mut classes = Classes {
            projection: projection(program)?,
            entries: Mutex::default(),
            counts: FastMap::default(),
            share: foldhash::fast::FixedState::default(),
            consumers: FastMap::default(),
        };
        let mut consumers = FastMap::default();
        let mut left = FastMap::default();
        for claim in claims {
            if !consumers.contains_key(&claim.consumer) {
                consumers.insert(claim.consumer.clone(), consumer(access, &claim.consumer));
            }
            let Some(Some(subject)) = consumers.get(&claim.consumer) else { continue };
            let (projected, _) = classes.split(claim, subject);
            let of_consumer = classes.share(&claim.contract, &projected, Some(claim));
            let of_class = classes.share(&claim.contract, &projected, None);
            *classes.counts.entry(of_consumer).or_default() += 1;
            *classes.counts.entry(of_class).or_default() += 1;
            *left.entry(of_class).or_default() += 1;
        }
        classes.consumers = consumers;
        classes.entries.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).left = left;
        Some(classes)
    }

    /// `claim`'s labels with its consumer's merged in (§15.1, as [`super::subject_of`] merges
    /// them), in the projection and outside it, each in label order: borrowed, not a merged copy.
    fn split<'l>(&self, claim: &'l Claim, subject: &'l Subject) -> (Projected<'l>, Projected<'l>) {
        let mut labels: Projected = (claim.labels.iter())
            .filter(|(label, _)| !subject.labels.contains_key(*label))
            .chain(&subject.labels)
            .collect();
        labels.sort_unstable_by_key(|(label, _)| *label);
        labels.into_iter().partition(|(label, _)| self.projection.contains(label.as_str()))
    }

    /// Whether a later claim may take the resolution that read `reads` of a claim whose
    /// [`Shares`] are `shares`: its class has another claim, of the same consumer if the
    /// resolution read the consumer's name (other reads of the consumer, its team or the access
    /// checks, agree across many), and the resolution did not read the claim's id.
    fn may_share(&self, shares: Shares, reads: &[(Read, Option<Value>)]) -> bool {
        if reads.iter().any(|(read, _)| *read == Read::Claim(ClaimField::Id)) {
            return false;
        }
        let of_consumer = reads.iter().any(|(read, _)| *read == Read::User(UserField::Name));
        let share = if of_consumer { shares.of_consumer } else { shares.of_class };
        self.counts.get(&share).is_some_and(|count| *count > 1)
    }

    /// The key of `counts` for the class of `contract` and `projected` labels, and `claim`'s
    /// consumer if given.
    fn share(&self, contract: &str, projected: &Projected, claim: Option<&Claim>) -> Share {
        self.share.hash_one((contract, projected, claim.map(|claim| &claim.consumer)))
    }

    /// Resolves `claim` (or takes a class-mate's resolution) and checks it against `fixed` as
    /// [`super::settle`] does: what [`super::resolve_claim`] then `settle` give.
    pub(super) fn resolve(
        &self,
        program: &Program,
        access: &Access,
        names: &Names,
        deployed: &DeployedNames,
        claim: &Claim,
        fixed: &DesiredState,
    ) -> (ClaimRunResult, Option<Failure>) {
        let id = claim.id();
        let looked_up;
        let subject = match self.consumers.get(&claim.consumer) {
            Some(subject) => subject.as_ref(),
            None => {
                looked_up = consumer(access, &claim.consumer);
                looked_up.as_ref()
            }
        };
        let Some(subject) = subject else {
            return ((id, Err(missing_consumer(claim)), Staged::new(), Vec::new()), None);
        };
        let (projected, passing) = self.split(claim, subject);
        let shares = Shares {
            of_class: self.share(&claim.contract, &projected, None),
            of_consumer: self.share(&claim.contract, &projected, Some(claim)),
        };
        // The labels, all of them, only for a claim that resolves on its own.
        let labels =
            || projected.iter().chain(&passing).map(|(label, value)| ((*label).clone(), (*value).clone())).collect();
        let class: Class = (
            claim.contract.clone(),
            projected.iter().map(|(label, value)| ((*label).clone(), (*value).clone())).collect(),
        );
        // The claim's result, and the entry it leaves if it is the first of its class told apart
        // by what it read.
        let (resolved, entry) = 'claim: {
            let known = self.lock().by_class.get(&class).cloned().unwrap_or_default();
            let found = known
                .into_iter()
                .find(|entry| entry.reads.iter().all(|(read, seen)| read.of(access, subject, claim) == *seen));
            if let Some(entry) = &found {
                match (&entry.result, entry.template.get()) {
                    (Err(failure), _) => {
                        break 'claim (((id, Err(failure.clone()), Staged::new(), Vec::new()), None), None);
                    }
                    (Ok(root), Some(template)) => {
                        break 'claim (rebase(root, template, id, &passing, fixed, &self.projection), None);
                    }
                    (Ok(_), None) => {}
                }
            }
            let recorder = Recorder::default();
            let mut run = ClaimRun::new(program, access, names, deployed, &id, claim, Some(&recorder), Some(&recorder));
            run.fixed = Some(fixed);
            let result = run.start(&claim.contract, subject.clone(), labels());
            let mut staged = run.staged;
            match (found, &result) {
                // The class's second claim, its first having kept no template (it conflicted on no
                // instance fixed before): its instances are kept for the rest.
                (Some(entry), Ok(root)) => {
                    // Up to its first conflict with an instance fixed before, if it has one.
                    if let Some(found) = fixed_conflict(fixed, &staged)
                        && let Some(after) = staged.keys().nth(found.at + 1).cloned()
                    {
                        drop(staged.split_off(&after));
                    }
                    let template = Template::new(staged, passing_json(&passing));
                    let result = rebase(root, &template, id, &passing, fixed, &self.projection);
                    // A class-mate on another thread may have kept the same instances first.
                    let _ = entry.template.set(template);
                    (result, None)
                }
                (found, _) => {
                    let first = found.is_none().then(|| {
                        let reads = recorder.into_reads().into_iter().map(|read| {
                            let seen = read.of(access, subject, claim);
                            (read, seen)
                        });
                        reads.collect::<Vec<_>>()
                    });
                    let (known, template) = match (&result, &first) {
                        (Ok(_), Some(reads)) if self.may_share(shares, reads) => {
                            settle_first(fixed, &mut staged, passing_json(&passing))
                        }
                        _ => (super::settle(fixed, &result, &mut staged), None),
                    };
                    let entry = first.map(|reads| {
                        let template = template.map_or_else(OnceLock::new, OnceLock::from);
                        Entry { reads, result: result.clone(), template }
                    });
                    (((id, result, staged, Vec::new()), known), entry)
                }
            }
        };
        self.done(class, shares.of_class, entry);
        resolved
    }

    /// Counts one more claim of `class` resolved, keeping `entry` (its resolution, if new) for
    /// the claims left: once none is left the class's entries are dropped. (Two classes sharing a
    /// [`Share`] share a count, so each is dropped no sooner than its own last claim.)
    fn done(&self, class: Class, share: Share, entry: Option<Entry>) {
        let mut memo = self.lock();
        let left = memo.left.get_mut(&share).map_or(0, |left| {
            *left = left.saturating_sub(1);
            *left
        });
        if left == 0 {
            memo.left.remove(&share);
            memo.by_class.remove(&class);
        } else if let Some(entry) = entry {
            memo.by_class.entry(class).or_default().push(Arc::new(entry));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ByClass> {
        self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// [`super::settle`] for a class's first claim, which resolved and may be shared. If it conflicts
/// on an instance fixed before (most of the engine shape's claims do), every later claim of the
/// class does, at that instance or at one of the candidates `settle` keeps (instances fixed never
/// change, and a later claim's fixed instances include the first's): those candidates and the
/// conflicting instance are the class's template, holding only what the conflict checks read (a
/// class-mate that conflicts never merges, so neither uses nor edges). The class then resolves
/// once, and its template is a handful of instances. (Without a conflict the template is left to
/// the class's second claim, as [`Entry::template`] says.)
fn settle_first(
    fixed: &DesiredState,
    staged: &mut Staged,
    passing: BTreeMap<String, serde_json::Value>,
) -> (Option<Failure>, Option<Template>) {
    let Some(found) = fixed_conflict(fixed, staged) else { return (None, None) };
    let checked = |mut instance: Box<Instance>| {
        instance.claims = Vec::new();
        instance.edges = Vec::new();
        instance
    };
    // The candidates stay staged and are copied into the template; the conflicting instance
    // moves there; the rest is dropped.
    let mut kept = Staged::new();
    let all = std::mem::take(staged);
    for (position, (key, instance)) in all.into_iter().enumerate() {
        if position == found.at {
            kept.insert(key, checked(instance));
        } else if found.is_candidate(position) {
            kept.insert(key.clone(), checked(instance.clone()));
            staged.insert(key, instance);
        }
    }
    (Some(found.failure), Some(Template::new(kept, passing)))
}

/// The class's resolution (service instance `root`, instances `template`) as claim `id`'s, whose
/// labels outside `projection` are `passing`, settled against `fixed` as [`super::settle`] does:
/// only the instances that may still merge are copied.
fn rebase(
    root: &str,
    template: &Template,
    id: String,
    passing: &Projected,
    fixed: &DesiredState,
    projection: &FastSet<String>,
) -> (ClaimRunResult, Option<Failure>) {
    let conflict = template.fixed_conflict(fixed);
    let mut maps: Vec<(*const BTreeMap<String, serde_json::Value>, LabelJson)> = Vec::new();
    // The passing labels as label maps hold them, if they are not the template's: made at the
    // first use copied (most class-mates conflict and copy none).
    let mut relabelled: Option<Option<BTreeMap<String, serde_json::Value>>> = None;
    let mut staged = Staged::new();
    for (position, (key, instance)) in template.staged.iter().enumerate() {
        if conflict.as_ref().is_some_and(|found| !found.is_candidate(position)) {
            continue;
        }
        let mut instance = instance.clone();
        for used in &mut instance.claims {
            used.claim.clone_from(&id);
            let passing = relabelled.get_or_insert_with(|| {
                let passing = passing_json(passing);
                (passing != template.passing).then_some(passing)
            });
            if let Some(passing) = passing {
                used.labels = relabel(&mut maps, &used.labels, passing, projection);
            }
        }
        staged.insert(key.clone(), instance);
    }
    ((id, Ok(root.to_string()), staged, Vec::new()), conflict.map(|found| found.failure))
}

/// Labels outside the projection as label maps hold them.
fn passing_json(passing: &Projected) -> BTreeMap<String, serde_json::Value> {
    passing.iter().map(|(label, value)| ((*label).clone(), value.to_json())).collect()
}

/// `labels` with the passing labels (outside `projection`) replaced by `passing`, made once per
/// map of a claim (`maps`: each map of the template and its replacement).
fn relabel(
    maps: &mut Vec<(*const BTreeMap<String, serde_json::Value>, LabelJson)>,
    labels: &LabelJson,
    passing: &BTreeMap<String, serde_json::Value>,
    projection: &FastSet<String>,
) -> LabelJson {
    if let Some((_, made)) = maps.iter().find(|(of, _)| *of == Arc::as_ptr(labels)) {
        return made.clone();
    }
    let mut map: BTreeMap<String, serde_json::Value> = labels
        .iter()
        .filter(|(label, _)| projection.contains(label.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    map.extend(passing.iter().map(|(k, v)| (k.clone(), v.clone())));
    let made = Arc::new(map);
    maps.push((Arc::as_ptr(labels), made.clone()));
    made
}

/// Every label the program's contracts, services and rules can read or write: each string under a
/// `label` key of their IR (`labels.X` is `{"label": X}`, a label operation `{"label": X, …}`).
/// Taking every such string over-approximates (a `user.labels.X` or `cluster.labels.X` adds `X`),
/// which only splits classes further; a label missed would make claims that differ in it alike.
fn projection(program: &Program) -> Option<FastSet<String>> {
    let ir = serde_json::to_value((&program.contracts, &program.services, &program.rules)).ok()?;
    let mut found = FastSet::default();
    walk(&ir, &mut found);
    Some(found)
}

/// Adds to `found` every string under a `label` key of `value`.
fn walk(value: &serde_json::Value, found: &mut FastSet<String>) {
    match value {
        serde_json::Value::Object(entries) => {
            for (key, value) in entries {
                if let (true, serde_json::Value::String(label)) = (key == "label", value) {
                    found.insert(label.clone());
                }
                walk(value, found);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, found)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::access::Access;
    use crate::ir::{Claim, Consumer, Expr, LabelOp, Origin, Program, Template, TemplatePart, User, Value};
    use crate::resolve::{DeployedNames, DesiredState, Names};

    /// A class's entries go once its last claim has resolved, and a class of one claim never
    /// keeps one: the memo holds only classes with claims still to come (at 100,000 claims of the
    /// engine shape, 28,353 classes, most of one claim, were all kept to the end).
    #[test]
    fn a_class_is_dropped_after_its_last_claim() {
        let claim = |name: &str, contract: &str| Claim {
            namespace: "a".into(),
            name: name.into(),
            consumer: Consumer::User("u".into()),
            contract: contract.into(),
            labels: std::sync::Arc::new([("a.quiet".to_string(), Value::Str(name.into()))].into()),
            origin: Origin::default(),
        };
        let user = User { name: "u".into(), team: None, groups: Vec::new(), labels: Default::default() };
        // Contracts that do not exist: each class's first claim fails, the others take its result.
        let program = Program {
            users: [("u".to_string(), user)].into(),
            claims: vec![claim("c1", "a.two"), claim("c2", "a.one"), claim("c3", "a.two"), claim("c4", "a.two")],
            ..Program::default()
        };
        let access = Access::new(&program);
        let names = Names::new(&program);
        let (deployed, fixed) = (DeployedNames::new(), DesiredState::default());
        let classes = super::Classes::new(&program, program.claims.iter(), &access).unwrap();
        let mut kept = Vec::new();
        for claim in &program.claims {
            let ((_, result, _, _), _) = classes.resolve(&program, &access, &names, &deployed, claim, &fixed);
            assert!(result.is_err());
            let memo = classes.lock();
            kept.push((memo.by_class.len(), memo.left.values().sum::<usize>()));
        }
        assert_eq!(kept, [(1, 3), (1, 2), (1, 1), (0, 0)]);
    }

    /// A template checked again as the fixed instances grow finds what a full check finds at
    /// every step: an instance fixed equal stays skipped, a conflict found stays, and an instance
    /// fixed later before it (equal, or conflicting, which then comes first) is seen.
    #[test]
    fn a_template_checked_again_finds_what_a_full_check_finds() {
        use crate::resolve::{ClaimUse, Instance, fixed_conflict};
        let instance = |key: &str, value: i64, claim: &str| {
            let used = ClaimUse { claim: claim.into(), depth: 0, labels: Default::default() };
            let values = serde_json::json!({ "v": value });
            Box::new(Instance { claims: vec![used], ..Instance::service_for_tests(key, values, serde_json::json!({})) })
        };
        let staged: super::Staged = ["a", "b", "c", "d", "e", "f"].map(|k| (k.to_string(), instance(k, 0, "x"))).into();
        let template = super::Template::new(staged.clone(), Default::default());
        let mut fixed = DesiredState::default();
        // Each step fixes one more instance (by an earlier claim): equal (0) or not.
        let steps = [("e", 1), ("b", 0), ("c", 0), ("d", 2), ("a", 0), ("f", 3), ("b", 0)];
        let mut seen = Vec::new();
        for (round, step) in std::iter::once(None).chain(steps.map(Some)).enumerate() {
            if let Some((key, value)) = step {
                fixed.instances.entry(key.to_string()).or_insert_with(|| instance(key, value, "earlier"));
            }
            let full = fixed_conflict(&fixed, &staged);
            let checked = template.fixed_conflict(&fixed);
            let summary = |found: &Option<super::FixedConflict>| {
                found
                    .as_ref()
                    .map(|f| (f.at, f.candidates.clone(), f.failure.reason.clone(), f.failure.conflict.clone()))
            };
            assert_eq!(summary(&checked), summary(&full), "round {round}");
            seen.push(checked.map(|f| (f.at, f.candidates)));
        }
        // The conflict moves from `e` to `d` once `d` is fixed differently, and the candidates
        // before it shrink as they are fixed equal.
        assert_eq!(
            seen,
            [
                None,
                Some((4, vec![0, 1, 2, 3])),
                Some((4, vec![0, 2, 3])),
                Some((4, vec![0, 3])),
                Some((3, vec![0])),
                Some((3, vec![])),
                Some((3, vec![])),
                Some((3, vec![])),
            ]
        );
    }

    /// The projection finds labels by the IR's serialized form: a label read (`labels.X`, also
    /// inside a template) and a label written or removed each carry it under a `label` key. Were
    /// that form to change, the projection would miss labels and make claims that differ in them
    /// alike; this test fails first.
    #[test]
    fn every_label_read_or_written_is_under_a_label_key() {
        let read = Expr::Label("system.a".into());
        let in_template = Expr::Template(Template { parts: vec![TemplatePart::Expr(Expr::Label("system.b".into()))] });
        let set = LabelOp::Set { label: "system.c".into(), value: Expr::Label("system.d".into()) };
        let remove = LabelOp::Remove { label: "system.e".into() };
        let mut found = crate::FastSet::default();
        let ir = serde_json::to_value((read, in_template, set, remove)).unwrap();
        super::walk(&ir, &mut found);
        let mut found: Vec<String> = found.into_iter().collect();
        found.sort();
        assert_eq!(found, ["system.a", "system.b", "system.c", "system.d", "system.e"]);
    }
}
