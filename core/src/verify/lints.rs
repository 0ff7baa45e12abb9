//! Lints from the verification engine (`aptc check`, the editor): contexts no claim can reach,
//! rules that can never fire, contracts no consumer may consume. Each is a proof over every class
//! of label values (docs/verification.md §2) and every consumer of the policy, so a lint is never
//! a guess; where the classes cannot cover what an expression reads, there is no lint.
//!
//! The labels a contract or rule sees are varied over every class of their type, not only what
//! claims can set (a contract reached through `uses` sees what its parent sets): more than any
//! claim can bring, so "no class reaches it" holds for every claim.

use std::collections::BTreeMap;

use serde::Serialize;

use super::domains::Uses;
use super::{Classes, held, label_space};
use crate::access::Access;
use crate::eval::{Env, Subject};
use crate::ir::{LabelOp, Origin, Program, Value};

/// How many (label classes × consumers) evaluations one contract or rule may take before the
/// lint gives up on it (silently: `aptc check` must stay fast).
pub const LINT_BUDGET: usize = 20_000;

/// What a lint found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LintKind {
    /// A context no claim can reach: an earlier context matches first, or its criteria are false.
    UnreachableContext,
    /// A rule whose criteria hold for no claim.
    RuleNeverFires,
    /// A contract in a namespace where no user or team of the policy may consume.
    NoConsumer,
}

/// One finding, at the object's name, with the proof in words.
#[derive(Clone, Debug, Serialize)]
pub struct Lint {
    pub kind: LintKind,
    /// The context's, rule's or contract's name, as declared.
    pub name: String,
    pub origin: Origin,
    pub message: String,
    /// Why it holds for every claim.
    pub proof: String,
}

/// The lints of `program` (none for a policy without users or teams), in a fixed order (contracts by id, then rules by namespace and order).
pub fn lints(program: &Program) -> Vec<Lint> {
    let access = Access::new(program);
    let mut subjects: Vec<Subject> = program.users.keys().filter_map(|u| access.user(u)).collect();
    subjects.extend(program.teams.keys().filter_map(|t| access.team(t)));
    // Without users or teams no claim exists at all: every lint would hold and say nothing.
    if subjects.is_empty() {
        return Vec::new();
    }
    let held = held(program);
    let mut out = Vec::new();
    for (id, contract) in &program.contracts {
        let consumers: Vec<&Subject> = subjects.iter().filter(|s| access.may_consume(s, &contract.namespace)).collect();
        if consumers.is_empty() {
            out.push(Lint {
                kind: LintKind::NoConsumer,
                name: contract.name.clone(),
                origin: contract.origin.clone(),
                message: format!("no user or team may consume contract `{id}`, so every claim of it fails"),
                proof: format!(
                    "no user or team of the policy ({}) has a role in namespace `{}` (from its grants and owner); a claim reaching it through `uses` fails there too",
                    subjects.len(),
                    contract.namespace
                ),
            });
            continue;
        }
        let mut uses = Uses::default();
        uses.contexts(contract);
        uses.settle();
        let Some(space) = space(program, &uses, &held, id, consumers.len()) else { continue };
        let mut reached = vec![false; contract.contexts.len()];
        'all: for n in 0..space.size {
            let labels = space.labels(n);
            for subject in &consumers {
                if let Some(i) = chosen(program, contract, labels.clone(), subject) {
                    reached[i] = true;
                    if reached.iter().all(|r| *r) {
                        break 'all;
                    }
                }
            }
        }
        for (context, _) in contract.contexts.iter().zip(&reached).filter(|(_, r)| !**r) {
            out.push(Lint {
                kind: LintKind::UnreachableContext,
                name: context.name.clone(),
                origin: context.origin.clone(),
                message: format!("context `{}` of `{id}` can never be chosen", context.name),
                proof: format!(
                    "for each of the {} classes of the labels its contexts read, and each consumer who may claim it ({} of {} users and teams), an earlier context matches first or its criteria are false",
                    space.size,
                    consumers.len(),
                    subjects.len()
                ),
            });
        }
    }
    for rules in program.rules.values() {
        for rule in rules {
            let Some(criteria) = &rule.criteria else { continue };
            let mut uses = Uses::default();
            uses.decision(criteria);
            uses.settle();
            let id = format!("{}.{}", rule.namespace, rule.name);
            let Some(space) = space(program, &uses, &held, &id, subjects.len()) else { continue };
            let fires = (0..space.size).any(|n| {
                let labels = space.labels(n);
                subjects.iter().any(|subject| env(program, &labels, subject).bool(criteria).unwrap_or(false))
            });
            if !fires {
                out.push(Lint {
                    kind: LintKind::RuleNeverFires,
                    name: rule.name.clone(),
                    origin: rule.origin.clone(),
                    message: format!("rule `{id}` can never fire"),
                    proof: format!(
                        "its criteria are false for each of the {} classes of the labels they read, and each user and team ({})",
                        space.size,
                        subjects.len()
                    ),
                });
            }
        }
    }
    out
}

/// The label classes `uses` reads, or `None` when the lint cannot decide (an expression reads
/// more than labels and the user, a label cannot be split, or the space is past the budget).
fn space(
    program: &Program,
    uses: &Uses,
    held: &BTreeMap<String, std::collections::BTreeSet<Value>>,
    id: &str,
    consumers: usize,
) -> Option<Classes> {
    if uses.beyond {
        return None;
    }
    let classes = label_space(|label| program.labels.get(label), uses, |_| false, held, id).ok()?;
    (classes.size.saturating_mul(consumers.max(1)) <= LINT_BUDGET).then_some(classes)
}

/// The context of `contract` chosen for these labels and this consumer, as the resolver chooses
/// it (§15.2 steps 2 and 3); `None` when none matches or an expression fails.
fn chosen(
    program: &Program,
    contract: &crate::ir::Contract,
    mut labels: BTreeMap<String, Value>,
    subject: &Subject,
) -> Option<usize> {
    for op in &contract.ops {
        match op {
            LabelOp::Set { label, value } => {
                let value = env(program, &labels, subject).eval(value).ok()?;
                labels.insert(label.clone(), value);
            }
            LabelOp::Remove { label } => {
                labels.remove(label);
            }
        }
    }
    let env = env(program, &labels, subject);
    for (i, context) in contract.contexts.iter().enumerate() {
        match &context.criteria {
            None => return Some(i),
            Some(criteria) => {
                if env.bool(criteria).ok()? {
                    return Some(i);
                }
            }
        }
    }
    None
}

fn env<'a>(program: &'a Program, labels: &'a BTreeMap<String, Value>, subject: &'a Subject) -> Env<'a> {
    Env {
        program,
        labels,
        user: subject,
        claim: ("", "", ""),
        placement: None,
        instance: None,
        discovery: None,
        values: None,
    }
}
