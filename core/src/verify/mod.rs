//! Assertions proved over every possible claim (docs/language.md §19, docs/verification.md).
//!
//! Each label's values are split into the classes the policy can tell apart ([`domains`]); the
//! engine then resolves one claim per combination of classes, per consumer and contract, with the
//! real resolver ([`crate::resolve::Alone`]), so a counterexample is exactly what resolution does.
//! What the abstraction cannot split, or a space past the budget, makes an assertion `Unknown`
//! with the reason: never `Proved` unless it is.

mod compare;
mod domains;
mod lints;
mod sat;

pub use compare::{Aspect, ChangeKind, Comparison, Impact, compare, compare_within};
pub use lints::{LINT_BUDGET, Lint, LintKind, lints, lints_within};
pub use sat::PATH_BUDGET;

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde::Serialize;

use crate::access::Access;
use crate::eval::{Env, Observer, Placement, Subject};
use crate::ir::{Assertion, Claim, Consumer, LabelDecl, Origin, Outcome, Party, Program, Quantifier, Target, Value};
use crate::resolve::{Alone, Chains, ClaimOutcome, DesiredState, Options, Status, resolve_with};

use domains::{Uses, finite, representatives};

/// How many possible claims (classes) one assertion may resolve before it is `Unknown`.
pub const BUDGET: usize = 200_000;

/// What `aptc verify` found for one assertion.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `namespace.name`.
    pub assertion: String,
    pub origin: Origin,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// How many possible claims (one per class, or one per path past the budget) were resolved.
    pub claims: usize,
    /// Past the enumeration budget, what the SAT-guided path enumeration did (§3); absent when
    /// every class was enumerated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub solver: Option<SolverRun>,
}

/// The SAT-guided path enumeration of one assertion (docs/verification.md §3).
#[derive(Clone, Debug, Serialize)]
pub struct SolverRun {
    /// The combinations of classes it stood for (saturating).
    pub classes: usize,
    /// The paths it resolved (each one representative claim).
    pub paths: usize,
}

/// Proved, violated (with a counterexample) or unknown (with why).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Verdict {
    Proved,
    Violated { counterexample: Box<Counterexample> },
    Unknown { reason: String },
}

/// A possible claim for which an expectation does not hold.
#[derive(Clone, Debug, Serialize)]
pub struct Counterexample {
    /// The claim, as the policy would hold it.
    pub claim: Claim,
    /// The expectation it violates, and where it is written.
    pub expectation: String,
    pub expectation_origin: Origin,
    /// Why it does not hold.
    pub why: String,
    /// How the claim resolves, with its decision chain.
    pub outcome: ClaimOutcome,
    /// Its desired state alone (the instances its chain names); `outcome` says what matters.
    #[serde(skip)]
    pub state: DesiredState,
}

/// Verifies every assertion of `program`, in the IR's order.
pub fn verify(program: &Program) -> Vec<Report> {
    if program.assertions.is_empty() {
        return Vec::new();
    }
    let shared = Shared::new(program);
    program.assertions.iter().map(|a| verify_with(&shared, a, BUDGET)).collect()
}

/// Verifies one assertion, enumerating at most `budget` possible claims; past it, the SAT-guided
/// paths decide (§3). A budget of 0 sends every space to them (the soundness test does).
pub fn verify_one(program: &Program, assertion: &Assertion, budget: usize) -> Report {
    verify_with(&Shared::new(program), assertion, budget)
}

/// What every assertion of a program uses: the resolver, roles, the policy's own resolution
/// (for sharing), and the label values its claims and consumers hold.
struct Shared<'p> {
    program: &'p Program,
    alone: Alone<'p>,
    access: Access<'p>,
    /// Instance key → the consumers of the policy's claims there.
    sharing: BTreeMap<String, Vec<Consumer>>,
    /// Label → values the policy's claims, users and teams give it.
    held: BTreeMap<String, BTreeSet<Value>>,
}

impl<'p> Shared<'p> {
    fn new(program: &'p Program) -> Shared<'p> {
        let deployed = Default::default();
        let state = resolve_with(program, &Options { deployed: &deployed, chains: Chains::None });
        let consumers: BTreeMap<String, &Consumer> = program.claims.iter().map(|c| (c.id(), &c.consumer)).collect();
        let sharing = state
            .instances
            .iter()
            .map(|(key, instance)| {
                let of = instance.claims.iter().filter_map(|u| consumers.get(&u.claim).map(|c| (*c).clone())).collect();
                (key.clone(), of)
            })
            .collect();
        let held = held(program);
        Shared { program, alone: Alone::new(program), access: Access::new(program), sharing, held }
    }

    /// The consumers an assertion is about, in order, with their subjects.
    fn consumers(&self, assertion: &Assertion) -> Vec<(Consumer, Subject)> {
        let program = self.program;
        let mut out: BTreeMap<(u8, String), Consumer> = BTreeMap::new();
        let mut user = |name: &str| {
            out.insert((0, name.to_string()), Consumer::User(name.into()));
        };
        if assertion.consumers.is_empty() {
            program.users.keys().for_each(|name| user(name));
        }
        for q in &assertion.consumers {
            match q {
                Quantifier::User(name) => user(name),
                Quantifier::TeamUsers(team) => program
                    .users
                    .iter()
                    .filter(|(_, u)| u.team.as_deref() == Some(team.as_str()))
                    .for_each(|(name, _)| user(name)),
                Quantifier::Group(group) => {
                    program.users.iter().filter(|(_, u)| u.groups.contains(group)).for_each(|(name, _)| user(name))
                }
                Quantifier::Team(_) => {}
            }
        }
        let teams: Vec<&String> = if assertion.consumers.is_empty() {
            program.teams.keys().collect()
        } else {
            assertion
                .consumers
                .iter()
                .filter_map(|q| match q {
                    Quantifier::Team(t) => Some(t),
                    _ => None,
                })
                .collect()
        };
        for team in teams {
            out.insert((1, team.clone()), Consumer::Team(team.as_str().into()));
        }
        out.into_values()
            .filter_map(|consumer| {
                let subject = match &consumer {
                    Consumer::User(name) => self.access.user(name)?,
                    Consumer::Team(name) => self.access.team(name)?,
                };
                Some((consumer, subject))
            })
            .collect()
    }
}

/// Label → values the policy's claims, users, teams and clusters give it, and its default.
fn held(program: &Program) -> BTreeMap<String, BTreeSet<Value>> {
    let mut held: BTreeMap<String, BTreeSet<Value>> = BTreeMap::new();
    let maps = program
        .claims
        .iter()
        .map(|c| &*c.labels)
        .chain(program.users.values().map(|u| &u.labels))
        .chain(program.teams.values().map(|t| &t.labels))
        .chain(program.clusters.values().map(|c| &c.labels));
    for map in maps {
        for (label, value) in map {
            held.entry(label.clone()).or_default().insert(value.clone());
        }
    }
    for (label, decl) in &program.labels {
        if let Some(default) = &decl.default {
            held.entry(label.clone()).or_default().insert(default.clone());
        }
    }
    held
}

/// One (consumer, contract) pair and its label space.
struct Space {
    consumer: Consumer,
    subject: Subject,
    contract: String,
    classes: Classes,
}

/// The spaces' possible claims numbered one after another, in the spaces' order: the first
/// number of each space, to find possible claim `n` in them ([`Spaces::at`]).
struct Spaces {
    spaces: Vec<Space>,
    starts: Vec<usize>,
}

impl Spaces {
    fn new(spaces: Vec<Space>) -> Spaces {
        let starts = spaces
            .iter()
            .scan(0usize, |at, s| {
                let start = *at;
                *at += s.classes.size;
                Some(start)
            })
            .collect();
        Spaces { spaces, starts }
    }

    /// The space of possible claim `n`, and its number within that space.
    fn at(&self, n: usize) -> (&Space, usize) {
        let i = self.starts.partition_point(|&start| start <= n) - 1;
        (&self.spaces[i], n - self.starts[i])
    }
}

/// Labels with the representatives of their classes, and how many combinations they make.
struct Classes {
    labels: Vec<(String, Vec<Option<Value>>)>,
    size: usize,
}

impl Classes {
    /// The `n`th combination (mixed radix, first label fastest), as a claim's labels.
    fn labels(&self, mut n: usize) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for (label, reps) in &self.labels {
            if let Some(Some(value)) = reps.get(n % reps.len()) {
                out.insert(label.clone(), value.clone());
            }
            n /= reps.len();
        }
        out
    }

    /// The combination that takes class `chosen[i]` of label `i`, as a claim's labels.
    fn chosen(&self, chosen: &[usize]) -> BTreeMap<String, Value> {
        self.labels
            .iter()
            .zip(chosen)
            .filter_map(|((label, reps), &c)| Some((label.clone(), reps.get(c)?.clone()?)))
            .collect()
    }
}

/// Each label `uses` reads (but `skip`s) with the representatives of its classes; `Err` with why
/// when a label's values cannot be split into classes.
fn label_space<'a>(
    decl: impl Fn(&str) -> Option<&'a LabelDecl>,
    uses: &Uses,
    skip: impl Fn(&str) -> bool,
    held: &BTreeMap<String, BTreeSet<Value>>,
    contract: &str,
) -> Result<Classes, String> {
    let mut labels = Vec::new();
    let mut size: usize = 1;
    for label in &uses.read {
        if skip(label) {
            continue;
        }
        let Some(decl) = decl(label) else { continue };
        if let Some(why) = uses.opaque.get(label)
            && !finite(&decl.ty)
        {
            return Err(format!(
                "label `{label}` is {why}, so its values cannot be split into classes (claims of `{contract}`)"
            ));
        }
        let empty = BTreeSet::new();
        let reps = representatives(&decl.ty, decl.default.as_ref(), uses, label, held.get(label).unwrap_or(&empty));
        if reps.is_empty() {
            continue;
        }
        size = size.saturating_mul(reps.len());
        labels.push((label.clone(), reps));
    }
    Ok(Classes { labels, size })
}

fn verify_with(shared: &Shared, assertion: &Assertion, budget: usize) -> Report {
    let report = |verdict, claims, solver| Report {
        assertion: assertion.id(),
        origin: assertion.origin.clone(),
        verdict,
        claims,
        solver,
    };
    let program = shared.program;
    let mut spaces: Vec<Space> = Vec::new();
    let mut total: usize = 0;
    let mut analyses: BTreeMap<&str, Uses> = BTreeMap::new();
    for (consumer, subject) in shared.consumers(assertion) {
        let contracts: Vec<&String> = if assertion.contracts.is_empty() {
            program
                .contracts
                .iter()
                .filter(|(_, c)| shared.access.may_consume(&subject, &c.namespace))
                .map(|(id, _)| id)
                .collect()
        } else {
            assertion.contracts.iter().collect()
        };
        for contract in contracts {
            let uses = analyses.entry(contract.as_str()).or_insert_with(|| {
                let mut uses = Uses::default();
                uses.contract(program, contract);
                if let Some(criteria) = &assertion.criteria {
                    uses.decision(criteria);
                }
                for e in &assertion.expects {
                    if let Outcome::That { expr } = &e.expect {
                        uses.decision(expr);
                    }
                }
                uses.settle();
                uses
            });
            // The consumer's own labels override the claim's: those are not the claim's to vary.
            let classes = match label_space(
                |label| program.labels.get(label),
                uses,
                |label| subject.labels.contains_key(label),
                &shared.held,
                contract,
            ) {
                Ok(space) => space,
                Err(reason) => return report(Verdict::Unknown { reason }, 0, None),
            };
            total = total.saturating_add(classes.size);
            spaces.push(Space {
                consumer: consumer.clone(),
                subject: subject.clone(),
                contract: contract.clone(),
                classes,
            });
        }
    }
    if total > budget {
        return by_solver(shared, assertion, spaces, total);
    }
    // Candidates in order: the first violation found is the first in this order, on any number
    // of threads.
    let spaces = Spaces::new(spaces);
    let found = (0..total).into_par_iter().find_map_first(|n| {
        let (space, index) = spaces.at(n);
        let claim = Claim {
            namespace: assertion.namespace.as_str().into(),
            name: format!("{}_counterexample", assertion.name),
            consumer: space.consumer.clone(),
            contract: space.contract.as_str().into(),
            labels: space.classes.labels(index).into(),
            origin: assertion.origin.clone(),
        };
        let (index, why) = judge(shared, assertion, &claim, &space.subject, None)?;
        Some((claim, index, why))
    });
    match found {
        None => report(Verdict::Proved, total, None),
        Some((claim, index, why)) => report(violated(shared, assertion, claim, index, why), total, None),
    }
}

/// Past the enumeration budget: each space explored path by path with the SAT solver (§3), the
/// spaces in parallel, the verdict taken in the spaces' order (so the same on any number of
/// threads): the first violation, else the first space past the path budget, else proved.
fn by_solver(shared: &Shared, assertion: &Assertion, spaces: Vec<Space>, total: usize) -> Report {
    let explored: Vec<sat::Explored<(Claim, usize, String)>> =
        spaces.par_iter().map(|space| by_paths(shared, assertion, space)).collect();
    let paths = explored.iter().map(sat::Explored::paths).fold(0usize, usize::saturating_add);
    let solver = Some(SolverRun { classes: total, paths });
    let report = |verdict| Report {
        assertion: assertion.id(),
        origin: assertion.origin.clone(),
        verdict,
        claims: paths,
        solver: solver.clone(),
    };
    let mut budget = None;
    for (space, explored) in spaces.iter().zip(explored) {
        match explored {
            sat::Explored::Found { found: (claim, index, why), .. } => {
                return report(violated(shared, assertion, claim, index, why));
            }
            sat::Explored::Budget { .. } if budget.is_none() => budget = Some(space),
            _ => {}
        }
    }
    match budget {
        None => report(Verdict::Proved),
        Some(space) => report(Verdict::Unknown {
            reason: format!(
                "more than {BUDGET} classes of claims, and the claims of `{}` by {} take more than {PATH_BUDGET} paths through the resolver; name the contracts or consumers with `for`, or narrow with `when`",
                space.contract,
                consumer_text(&space.consumer)
            ),
        }),
    }
}

/// One space explored path by path (§3): each path's representative judged with the path's
/// observer; the first violating one, made simpler, is the finding.
fn by_paths(shared: &Shared, assertion: &Assertion, space: &Space) -> sat::Explored<(Claim, usize, String)> {
    let claim_of = |chosen: &[usize]| Claim {
        namespace: assertion.namespace.as_str().into(),
        name: format!("{}_counterexample", assertion.name),
        consumer: space.consumer.clone(),
        contract: space.contract.as_str().into(),
        labels: space.classes.chosen(chosen).into(),
        origin: assertion.origin.clone(),
    };
    sat::explore(&space.classes.labels, PATH_BUDGET, |path| {
        let observer = path.observer(shared.program, &space.subject);
        let found = judge(shared, assertion, &claim_of(path.chosen()), &space.subject, Some(&observer))?;
        let (chosen, (index, why)) = sat::simplest(path.chosen().to_vec(), found, |fewer| {
            judge(shared, assertion, &claim_of(fewer), &space.subject, None)
        });
        Some((claim_of(&chosen), index, why))
    })
}

/// The verdict of a violating claim: resolved again with its decision chain.
fn violated(shared: &Shared, assertion: &Assertion, claim: Claim, index: usize, why: String) -> Verdict {
    let state = shared.alone.resolve(&claim, true);
    let outcome =
        state.claims.get(&claim.id()).map(|o| ClaimOutcome::clone(o)).expect("a resolved claim has an outcome");
    let expect = &assertion.expects[index];
    let counterexample = Counterexample {
        claim,
        expectation: describe(&expect.expect),
        expectation_origin: expect.origin.clone(),
        why,
        outcome,
        state,
    };
    Verdict::Violated { counterexample: Box::new(counterexample) }
}

/// Whether a possible claim violates the assertion (the expectation and why), resolved alone;
/// everything read of its labels is told to `observer` (the `when`, the resolution, the
/// expectations).
fn judge(
    shared: &Shared,
    assertion: &Assertion,
    claim: &Claim,
    subject: &Subject,
    observer: Option<&dyn Observer>,
) -> Option<(usize, String)> {
    if !concerned(shared.program, assertion, claim, subject, observer) {
        return None;
    }
    let state = shared.alone.resolve_observed(claim, false, observer);
    violation(shared, assertion, claim, subject, &state, observer)
}

/// Whether the assertion's `when` holds for the claim's initial labels (an error: not concerned).
fn concerned(
    program: &Program,
    assertion: &Assertion,
    claim: &Claim,
    subject: &Subject,
    observer: Option<&dyn Observer>,
) -> bool {
    let Some(criteria) = &assertion.criteria else { return true };
    let mut labels = BTreeMap::clone(&claim.labels);
    labels.extend(subject.labels.clone());
    let id = claim.id();
    let env =
        Env { claim: (&claim.name, &claim.namespace, &id), observer, ..Env::of_labels(program, &labels, subject) };
    env.bool(criteria).unwrap_or(false)
}

/// The first expectation the resolved claim violates, and why.
fn violation(
    shared: &Shared,
    assertion: &Assertion,
    claim: &Claim,
    subject: &Subject,
    state: &DesiredState,
    observer: Option<&dyn Observer>,
) -> Option<(usize, String)> {
    let id = claim.id();
    let outcome = state.claims.get(&id)?;
    let status = outcome.status;
    let reason = || outcome.reason.clone().unwrap_or_default();
    let resolved = status == Status::Resolved;
    assertion.expects.iter().enumerate().find_map(|(i, e)| {
        let why = match &e.expect {
            Outcome::Resolved if !resolved => Some(format!("it does not resolve: {}", reason())),
            Outcome::Rejected if resolved => Some("it resolves".to_string()),
            Outcome::Failed if resolved => Some("it resolves".to_string()),
            Outcome::Failed if status == Status::Rejected => Some(format!("a rule rejects it: {}", reason())),
            Outcome::PlacedOn { clusters } if resolved => state
                .instances
                .values()
                .find(|inst| !clusters.iter().any(|c| **c == *inst.cluster))
                .map(|inst| format!("instance `{}` is placed on `{}`", inst.key, inst.cluster)),
            Outcome::Reaches { never, target } => {
                let reached = state.instances.values().find(|inst| match target {
                    Target::Contract(c) => *inst.contract == **c,
                    Target::Service(s) => *inst.service == **s,
                    Target::Component { service, component } => {
                        *inst.service == **service && *inst.component == **component
                    }
                });
                match (never, reached) {
                    (true, Some(inst)) => Some(format!("it reaches `{}`", inst.key)),
                    (false, None) if !resolved => Some(format!("it does not resolve: {}", reason())),
                    (false, None) => Some("none of its instances is of it".to_string()),
                    _ => None,
                }
            }
            Outcome::Shares { never, with } => {
                let shared_with = state.instances.keys().find_map(|key| {
                    let others = shared.sharing.get(key)?;
                    others.iter().find(|c| party(shared.program, with, &claim.consumer, c)).map(|c| (key, c))
                });
                match (never, shared_with) {
                    (true, Some((key, c))) => Some(format!("it shares `{key}` with a claim of {}", consumer_text(c))),
                    (false, None) if !resolved => Some(format!("it does not resolve: {}", reason())),
                    (false, None) => Some("it shares no instance with such a claim".to_string()),
                    _ => None,
                }
            }
            Outcome::That { expr } if resolved => {
                let labels: BTreeMap<String, Value> = outcome
                    .labels
                    .as_deref()
                    .map(|l| l.iter().filter_map(|(k, v)| Some((k.clone(), from_json(v)?))).collect())
                    .unwrap_or_default();
                let root = outcome.root.as_ref().and_then(|r| state.instances.get(r));
                let placement =
                    root.map(|r| Placement { cluster: r.cluster.to_string(), namespace: r.k8s_namespace.to_string() });
                let env = Env {
                    claim: (&claim.name, &claim.namespace, &id),
                    placement: placement.as_ref(),
                    observer,
                    ..Env::of_labels(shared.program, &labels, subject)
                };
                match env.bool(expr) {
                    Ok(true) => None,
                    Ok(false) => Some("it is false at the claimed contract".to_string()),
                    Err(error) => Some(format!("it cannot be evaluated: {error}")),
                }
            }
            _ => None,
        };
        why.map(|why| (i, why))
    })
}

/// Whether a claim of `other` is one of `with`'s, for a possible claim of `own`.
fn party(program: &Program, with: &Party, own: &Consumer, other: &Consumer) -> bool {
    match with {
        Party::Others => other != own,
        Party::User(name) => matches!(other, Consumer::User(u) if u.eq_ignore_ascii_case(name)),
        Party::Team(team) => match other {
            Consumer::Team(t) => **t == **team,
            Consumer::User(u) => {
                program.users.get(&u.to_lowercase()).and_then(|u| u.team.as_ref()).is_some_and(|t| t == team)
            }
        },
    }
}

fn consumer_text(consumer: &Consumer) -> String {
    match consumer {
        Consumer::User(u) => format!("user `{u}`"),
        Consumer::Team(t) => format!("team `{t}`"),
    }
}

/// An expectation in words, as written.
pub fn describe(outcome: &Outcome) -> String {
    let never = |n: &bool| if *n { "never " } else { "" };
    match outcome {
        Outcome::Resolved => "expect resolved".into(),
        Outcome::Rejected => "expect rejected".into(),
        Outcome::Failed => "expect failed".into(),
        Outcome::PlacedOn { clusters } => format!("expect placed on {}", clusters.join(", ")),
        Outcome::Reaches { never: n, target } => {
            let target = match target {
                Target::Contract(c) | Target::Service(c) => c.clone(),
                Target::Component { service, component } => format!("{service}.{component}"),
            };
            format!("expect {}reaches {target}", never(n))
        }
        Outcome::Shares { never: n, with } => {
            let with = match with {
                Party::User(u) => format!("user {u:?}"),
                Party::Team(t) => format!("team {t}"),
                Party::Others => "others".into(),
            };
            format!("expect {}shares with {with}", never(n))
        }
        Outcome::That { .. } => "expect that …".into(),
    }
}

/// A label value of the desired state back as an IR value.
fn from_json(value: &serde_json::Value) -> Option<Value> {
    Some(match value {
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => Value::Int(n.as_i64()?),
        serde_json::Value::String(s) => Value::Str(s.clone()),
        serde_json::Value::Array(items) => Value::List(items.iter().map(from_json).collect::<Option<_>>()?),
        serde_json::Value::Object(entries) => {
            Value::Map(entries.iter().map(|(k, v)| Some((k.clone(), from_json(v)?))).collect::<Option<_>>()?)
        }
        serde_json::Value::Null => return None,
    })
}
