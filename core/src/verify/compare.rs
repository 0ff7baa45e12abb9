//! Two versions of a policy compared over every possible claim (`aptc diff --all-claims`,
//! docs/verification.md §6): the label classes of both versions together, each possible claim
//! resolved alone by each version, and the claims whose outcome, placement or sharing differs
//! grouped into kinds, each with a concrete example. No change found over every class is a proof
//! that no possible claim changes; what the classes cannot cover is `Unknown`.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde::Serialize;

use super::domains::Uses;
use super::{BUDGET, PATH_BUDGET, Shared, SolverRun, Space, Spaces, consumer_text, label_space, sat};
use crate::eval::{Observer, Subject};
use crate::ir::{Claim, Consumer, Origin, Program};
use crate::resolve::{DesiredState, Status};

/// What changes for the possible claims.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    #[serde(flatten)]
    pub verdict: Impact,
    /// How many possible claims each version resolved: one per class, or past the enumeration
    /// budget one per path (§3).
    pub claims: usize,
    /// Past the enumeration budget, what the SAT-guided path enumeration did; then each kind's
    /// `claims` counts paths, not classes. Absent when every class was enumerated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub solver: Option<SolverRun>,
}

/// No possible claim changes (a proof over every class), these kinds change, or the engine
/// cannot tell (with why).
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Impact {
    Unchanged,
    Changed { kinds: Vec<ChangeKind> },
    Unknown { reason: String },
}

/// What about a claim changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aspect {
    /// Resolved, rejected or failed (and why).
    Outcome,
    /// The clusters and Kubernetes namespaces its instances are on (resolved both times).
    Placement,
    /// The consumers of the policy's own claims it shares an instance with (resolved both times).
    Sharing,
}

/// One kind of change: the claims of one contract whose `aspect` goes from `before` to `after`.
#[derive(Clone, Debug, Serialize)]
pub struct ChangeKind {
    pub aspect: Aspect,
    pub contract: String,
    pub before: String,
    pub after: String,
    /// How many possible claims change so, and whose: classes when every class was enumerated;
    /// past the budget, the paths that showed it (each at least one class of its own, so a lower
    /// bound of the classes).
    pub claims: usize,
    pub consumers: BTreeSet<String>,
    /// The first such claim in the enumeration's order (past the budget: of the first path that
    /// showed it, with each label in turn put back to its first class while it still does).
    pub example: Claim,
}

/// One possible claim as a version resolves it, summarized per aspect.
#[derive(PartialEq)]
struct Seen {
    outcome: String,
    resolved: bool,
    placement: String,
    /// Each instance it shares with a claim of the policy: "`key` with user `x`".
    sharing: BTreeSet<String>,
}

/// Compares `old` and `new` over every possible claim: every consumer (user or team) of either,
/// every contract of either it may consume in either, every combination of label classes.
pub fn compare(old: &Program, new: &Program) -> Comparison {
    compare_within(old, new, BUDGET, PATH_BUDGET)
}

/// [`compare`], enumerating at most `budget` possible claims per version; past it, the SAT-guided
/// paths decide (§3), at most `paths` per consumer and contract. A budget of 0 sends every space
/// to them (the soundness test does).
pub fn compare_within(old: &Program, new: &Program, budget: usize, paths: usize) -> Comparison {
    let unknown = |reason: String| Comparison { verdict: Impact::Unknown { reason }, claims: 0, solver: None };
    let (before, after) = (Shared::new(old), Shared::new(new));
    let mut held = before.held.clone();
    for (label, values) in &after.held {
        held.entry(label.clone()).or_default().extend(values.iter().cloned());
    }
    for (label, decl) in &old.labels {
        if let Some(other) = new.labels.get(label)
            && other.ty != decl.ty
        {
            return unknown(format!(
                "label `{label}` changes type ({} to {}): its values are not one domain",
                decl.ty, other.ty
            ));
        }
    }
    let mut consumers: BTreeMap<(u8, String), Consumer> = BTreeMap::new();
    for program in [old, new] {
        for name in program.users.keys() {
            consumers.insert((0, name.clone()), Consumer::User(name.as_str().into()));
        }
        for name in program.teams.keys() {
            consumers.insert((1, name.clone()), Consumer::Team(name.as_str().into()));
        }
    }
    let contracts: BTreeSet<&String> = old.contracts.keys().chain(new.contracts.keys()).collect();
    let mut analyses: BTreeMap<&str, Uses> = BTreeMap::new();
    let mut spaces: Vec<Space> = Vec::new();
    // Each space's consumer as each version knows it (the other's where one does not).
    let mut subjects_of: Vec<[Subject; 2]> = Vec::new();
    let mut total: usize = 0;
    for consumer in consumers.into_values() {
        let subjects: Vec<_> = [&before, &after]
            .into_iter()
            .filter_map(|shared| {
                let subject = match &consumer {
                    Consumer::User(name) => shared.access.user(name)?,
                    Consumer::Team(name) => shared.access.team(name)?,
                };
                Some((shared, subject))
            })
            .collect();
        for &contract in &contracts {
            // A consumer who may consume it in neither version fails on access in both.
            let consumable = subjects.iter().any(|(shared, subject)| {
                shared.program.contracts.get(contract).is_some_and(|c| shared.access.may_consume(subject, &c.namespace))
            });
            if !consumable {
                continue;
            }
            let uses = analyses.entry(contract.as_str()).or_insert_with(|| {
                let walk = |program: &Program| {
                    let mut uses = Uses::default();
                    uses.contract(program, contract);
                    uses.settle();
                    uses
                };
                let mut uses = walk(old);
                uses.merge(&walk(new));
                uses
            });
            // A label every version's consumer sets is not the claim's to vary.
            let classes = match label_space(
                |label| new.labels.get(label).or_else(|| old.labels.get(label)),
                uses,
                |label| subjects.iter().all(|(_, subject)| subject.labels.contains_key(label)),
                &held,
                contract,
            ) {
                Ok(space) => space,
                Err(reason) => return unknown(reason),
            };
            total = total.saturating_add(classes.size);
            let of = |shared: &Shared| subjects.iter().find(|(s, _)| std::ptr::eq(*s, shared)).map(|(_, s)| s.clone());
            let first = subjects[0].1.clone();
            subjects_of.push([of(&before).unwrap_or_else(|| first.clone()), of(&after).unwrap_or(first)]);
            spaces.push(Space {
                consumer: consumer.clone(),
                subject: subjects[0].1.clone(),
                contract: contract.clone(),
                classes,
            });
        }
    }
    let versions = Versions { before: &before, after: &after, old, new };
    if total > budget {
        return by_paths(&versions, &spaces, &subjects_of, total, paths);
    }
    let spaces = Spaces::new(spaces);
    let changes: Vec<(usize, Vec<Difference>)> = (0..total)
        .into_par_iter()
        .filter_map(|n| {
            let (space, index) = spaces.at(n);
            let differs = versions.differences(&possible_claim(space, &space.classes.labels(index), old, new), None);
            (!differs.is_empty()).then_some((n, differs))
        })
        .collect();
    let kinds = kinds(
        changes.into_iter().map(|(n, differs)| {
            let (space, within) = spaces.at(n);
            (space, within, differs)
        }),
        |space, within, _| possible_claim(space, &space.classes.labels(*within), old, new),
    );
    let verdict = if kinds.is_empty() { Impact::Unchanged } else { Impact::Changed { kinds } };
    Comparison { verdict, claims: total, solver: None }
}

/// What differs for one possible claim: the aspect, before and after.
type Difference = (Aspect, String, String);

/// A path whose representative differs: its classes, and what differs.
type Found = (Vec<usize>, Vec<Difference>);

/// The two versions, as each resolves claims.
struct Versions<'v> {
    before: &'v Shared<'v>,
    after: &'v Shared<'v>,
    old: &'v Program,
    new: &'v Program,
}

impl Versions<'_> {
    /// How the claim's outcome, placement and sharing differ between the versions; each version's
    /// run is told to its observer, when there are.
    fn differences(&self, claim: &Claim, observers: Option<[&dyn Observer; 2]>) -> Vec<Difference> {
        let (a, b) =
            (seen(self.before, claim, observers.map(|o| o[0])), seen(self.after, claim, observers.map(|o| o[1])));
        let mut differs = Vec::new();
        if a.outcome != b.outcome {
            differs.push((Aspect::Outcome, a.outcome, b.outcome));
        } else if a.resolved {
            if a.placement != b.placement {
                differs.push((Aspect::Placement, a.placement, b.placement));
            }
            if a.sharing != b.sharing {
                // Only what differs: a shared platform instance shared in both says nothing.
                let only = |x: &BTreeSet<String>, y: &BTreeSet<String>| list(x.difference(y).cloned().collect());
                differs.push((Aspect::Sharing, only(&a.sharing, &b.sharing), only(&b.sharing, &a.sharing)));
            }
        }
        differs
    }
}

/// The kinds of the differences found, in the order given: one per contract, aspect, before and
/// after, counting each finding once; `example` makes a kind's example from its first finding
/// (where in its space, and the difference).
fn kinds<'s, W>(
    found: impl Iterator<Item = (&'s Space, W, Vec<Difference>)>,
    mut example: impl FnMut(&'s Space, &W, &Difference) -> Claim,
) -> Vec<ChangeKind> {
    let mut kinds: Vec<ChangeKind> = Vec::new();
    let mut index: BTreeMap<(Aspect, String, String, String), usize> = BTreeMap::new();
    for (space, at, differs) in found {
        for difference in differs {
            let key = (difference.0, space.contract.clone(), difference.1.clone(), difference.2.clone());
            let i = match index.get(&key) {
                Some(i) => *i,
                None => {
                    let example = example(space, &at, &difference);
                    let (aspect, before, after) = difference;
                    kinds.push(ChangeKind {
                        aspect,
                        contract: space.contract.clone(),
                        before,
                        after,
                        claims: 0,
                        consumers: BTreeSet::new(),
                        example,
                    });
                    index.insert(key, kinds.len() - 1);
                    kinds.len() - 1
                }
            };
            kinds[i].claims += 1;
            kinds[i].consumers.insert(consumer_text(&space.consumer));
        }
    }
    kinds
}

/// Past the enumeration budget (§3, §6): each space explored path by path, each path's
/// representative resolved by both versions with the path's observers (the path condition is
/// what both runs learnt), the spaces in parallel and the kinds read in the spaces' order, then
/// the paths' (so the same on any number of threads). Each kind's example is its first path's
/// representative, with each label in turn put back to its first class while it still differs
/// the same way. Any space past `budget` paths makes the comparison `Unknown`.
fn by_paths(
    versions: &Versions,
    spaces: &[Space],
    subjects: &[[Subject; 2]],
    total: usize,
    budget: usize,
) -> Comparison {
    let explored: Vec<(sat::Explored<()>, Vec<Found>)> = spaces
        .par_iter()
        .zip(subjects)
        .map(|(space, [old_subject, new_subject])| {
            let claim_of =
                |chosen: &[usize]| possible_claim(space, &space.classes.chosen(chosen), versions.old, versions.new);
            let mut found = Vec::new();
            let explored = sat::explore(&space.classes.labels, budget, |path| {
                let (a, b) = (path.observer(versions.old, old_subject), path.observer(versions.new, new_subject));
                let differs = versions.differences(&claim_of(path.chosen()), Some([&a, &b]));
                if !differs.is_empty() {
                    found.push((path.chosen().to_vec(), differs));
                }
                None
            });
            (explored, found)
        })
        .collect();
    let paths = explored.iter().map(|(e, _)| e.paths()).fold(0usize, usize::saturating_add);
    let solver = Some(SolverRun { classes: total, paths });
    if let Some(space) =
        spaces.iter().zip(&explored).find_map(|(s, (e, _))| matches!(e, sat::Explored::Budget { .. }).then_some(s))
    {
        return Comparison {
            verdict: Impact::Unknown {
                reason: format!(
                    "more than {BUDGET} classes of claims, and the claims of `{}` by {} take more than {budget} paths through the two versions",
                    space.contract,
                    consumer_text(&space.consumer)
                ),
            },
            claims: paths,
            solver,
        };
    }
    let found = spaces
        .iter()
        .zip(explored)
        .flat_map(|(space, (_, found))| found.into_iter().map(move |(chosen, differs)| (space, chosen, differs)));
    // Each kind's example: its first path, made simpler while it still differs that way.
    let kinds = kinds(found, |space, chosen, difference| {
        let claim_of =
            |chosen: &[usize]| possible_claim(space, &space.classes.chosen(chosen), versions.old, versions.new);
        let (simple, ()) = sat::simplest(chosen.clone(), (), |fewer| {
            versions.differences(&claim_of(fewer), None).contains(difference).then_some(())
        });
        claim_of(&simple)
    });
    let verdict = if kinds.is_empty() { Impact::Unchanged } else { Impact::Changed { kinds } };
    Comparison { verdict, claims: paths, solver }
}

/// A possible claim of a space with these labels, in the contract's namespace (of the version
/// that has it).
fn possible_claim(space: &Space, labels: &BTreeMap<String, crate::ir::Value>, old: &Program, new: &Program) -> Claim {
    let namespace = new
        .contracts
        .get(&space.contract)
        .or_else(|| old.contracts.get(&space.contract))
        .map(|c| c.namespace.clone())
        .unwrap_or_default();
    Claim {
        namespace: namespace.into(),
        name: "possible_claim".to_string(),
        consumer: space.consumer.clone(),
        contract: space.contract.as_str().into(),
        labels: labels.clone().into(),
        origin: Origin { file: "(a possible claim)".into(), line: 0, column: 0 },
    }
}

/// How one version resolves a claim, per aspect.
fn seen(shared: &Shared, claim: &Claim, observer: Option<&dyn Observer>) -> Seen {
    let state: DesiredState = shared.alone.resolve_observed(claim, false, observer);
    let outcome = state.claims.get(&claim.id());
    let status = outcome.map(|o| o.status);
    let reason = outcome.and_then(|o| o.reason.clone()).unwrap_or_default();
    let outcome = match status {
        Some(Status::Resolved) => "resolved".to_string(),
        Some(Status::Rejected) => format!("rejected: {reason}"),
        Some(Status::Failed) | None => format!("failed: {reason}"),
    };
    let placement: BTreeSet<String> =
        state.instances.values().map(|i| format!("{}/{}", i.cluster, i.k8s_namespace)).collect();
    let pairs: BTreeSet<(&String, String)> = state
        .instances
        .keys()
        .filter_map(|key| Some((key, shared.sharing.get(key)?)))
        .flat_map(|(key, others)| others.iter().map(move |c| (key, consumer_text(c))))
        .collect();
    // An instance's components (keys under its key) go with it: the instance says it.
    let sharing: BTreeSet<String> = pairs
        .iter()
        .filter(|(key, who)| {
            !pairs.iter().any(|(above, w)| w == who && key.len() > above.len() && key.starts_with(&format!("{above}/")))
        })
        .map(|(key, who)| format!("`{key}` with {who}"))
        .collect();
    Seen { outcome, resolved: status == Some(Status::Resolved), placement: list(placement), sharing }
}

/// A set for people: its items by commas, or "none".
fn list(set: BTreeSet<String>) -> String {
    if set.is_empty() { "none".to_string() } else { set.into_iter().collect::<Vec<_>>().join(", ") }
}
