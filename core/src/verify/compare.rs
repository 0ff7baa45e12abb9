//! Two versions of a policy compared over every possible claim (`aptc diff --all-claims`,
//! docs/verification.md §6): the label classes of both versions together, each possible claim
//! resolved alone by each version, and the claims whose outcome, placement or sharing differs
//! grouped into kinds, each with a concrete example. No change found over every class is a proof
//! that no possible claim changes; what the classes cannot cover is `Unknown`.

use std::collections::{BTreeMap, BTreeSet};

use rayon::prelude::*;
use serde::Serialize;

use super::domains::Uses;
use super::{BUDGET, Shared, Space, Spaces, consumer_text, label_space};
use crate::ir::{Claim, Consumer, Origin, Program};
use crate::resolve::{DesiredState, Status};

/// What changes for the possible claims.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    #[serde(flatten)]
    pub verdict: Impact,
    /// How many possible claims (one per class) each version resolved.
    pub claims: usize,
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
    /// How many possible claims (classes) change so, and whose.
    pub claims: usize,
    pub consumers: BTreeSet<String>,
    /// The first such claim in the enumeration's order.
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
    compare_within(old, new, BUDGET)
}

/// [`compare`], resolving at most `budget` possible claims per version.
pub fn compare_within(old: &Program, new: &Program, budget: usize) -> Comparison {
    let unknown = |reason: String| Comparison { verdict: Impact::Unknown { reason }, claims: 0 };
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
            consumers.insert((0, name.clone()), Consumer::User(name.clone()));
        }
        for name in program.teams.keys() {
            consumers.insert((1, name.clone()), Consumer::Team(name.clone()));
        }
    }
    let contracts: BTreeSet<&String> = old.contracts.keys().chain(new.contracts.keys()).collect();
    let mut analyses: BTreeMap<&str, Uses> = BTreeMap::new();
    let mut spaces: Vec<Space> = Vec::new();
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
            let size = classes.size;
            total = total.saturating_add(size);
            if total > budget {
                return unknown(format!(
                    "more than {budget} classes of claims to resolve (the labels of `{contract}` alone give {size})"
                ));
            }
            spaces.push(Space {
                consumer: consumer.clone(),
                subject: subjects[0].1.clone(),
                contract: contract.clone(),
                classes,
            });
        }
    }
    let spaces = Spaces::new(spaces);
    let changes: Vec<(usize, Vec<(Aspect, String, String)>)> = (0..total)
        .into_par_iter()
        .filter_map(|n| {
            let (space, index) = spaces.at(n);
            let claim = possible_claim(space, index, old, new);
            let (a, b) = (seen(&before, &claim), seen(&after, &claim));
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
            (!differs.is_empty()).then_some((n, differs))
        })
        .collect();
    if changes.is_empty() {
        return Comparison { verdict: Impact::Unchanged, claims: total };
    }
    // Kinds in the order of their first example.
    let mut kinds: Vec<ChangeKind> = Vec::new();
    let mut index: BTreeMap<(Aspect, String, String, String), usize> = BTreeMap::new();
    for (n, differs) in changes {
        let (space, within) = spaces.at(n);
        for (aspect, before, after) in differs {
            let key = (aspect, space.contract.clone(), before.clone(), after.clone());
            let at = *index.entry(key).or_insert_with(|| {
                kinds.push(ChangeKind {
                    aspect,
                    contract: space.contract.clone(),
                    before,
                    after,
                    claims: 0,
                    consumers: BTreeSet::new(),
                    example: possible_claim(space, within, old, new),
                });
                kinds.len() - 1
            });
            kinds[at].claims += 1;
            kinds[at].consumers.insert(consumer_text(&space.consumer));
        }
    }
    Comparison { verdict: Impact::Changed { kinds }, claims: total }
}

/// The `n`th claim of a space, in the contract's namespace (of the version that has it).
fn possible_claim(space: &Space, n: usize, old: &Program, new: &Program) -> Claim {
    let namespace = new
        .contracts
        .get(&space.contract)
        .or_else(|| old.contracts.get(&space.contract))
        .map(|c| c.namespace.clone())
        .unwrap_or_default();
    Claim {
        namespace,
        name: "possible_claim".to_string(),
        consumer: space.consumer.clone(),
        contract: space.contract.clone(),
        labels: space.classes.labels(n),
        origin: Origin { file: "(a possible claim)".to_string(), line: 0, column: 0 },
    }
}

/// How one version resolves a claim, per aspect.
fn seen(shared: &Shared, claim: &Claim) -> Seen {
    let state: DesiredState = shared.alone.resolve(claim, false);
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
