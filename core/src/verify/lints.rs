//! Lints from the verification engine (`aptc check`, the editor): contexts no claim can reach,
//! rules that can never fire, rules shadowed by an earlier rejection, placements in no valid
//! Kubernetes namespace, contracts no consumer may consume. Each is a proof over every class of
//! label values (docs/verification.md §2) and every consumer of the policy, so a lint is never a
//! guess; where the classes cannot cover what an expression reads, there is no lint.
//!
//! The labels a contract or rule sees are varied over every class of their type, not only what
//! claims can set (a contract reached through `uses` sees what its parent sets): more than any
//! claim can bring, so "no class reaches it" holds for every claim.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::domains::Uses;
use super::{Classes, held, label_space, sat};
use crate::access::Access;
use crate::eval::{Env, EvalError, Observer, Subject};
use crate::ir::{Action, Expr, LabelOp, Origin, Program, Rule, TemplatePart, Value};
use crate::resolve::is_dns_label;

/// How many (label classes × consumers) evaluations one contract or rule may take by enumeration;
/// for a shadowed rule, each class and consumer counts once per rule run (the rules before it,
/// and it). Past it, the same number of evaluations with one path (docs/verification.md §3) in
/// place of each class: at most `LINT_BUDGET / (consumers × runs)` paths, then the lint gives up
/// (silently: `aptc check` must stay fast).
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
    /// A rule that can fire only on claims an earlier rule of its namespace has rejected: it
    /// never has an effect (its labels, placement or rejection), though its criteria can hold.
    ShadowedRule,
    /// A rule whose placement (its last `place`, which overrides the others) gives no claim a
    /// valid Kubernetes namespace: every claim it places fails, unless a later rule places it again.
    InvalidPlacement,
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
    /// Another object the proof rests on (the earlier rule that shadows a rule): its name and
    /// where it is declared, so the report can point at both.
    pub related: Option<(String, Origin)>,
}

/// The lints of `program` (none for a policy without users or teams), in a fixed order: contracts
/// by id, then rules by namespace and order (whether each can fire or is shadowed, then its placement).
pub fn lints(program: &Program) -> Vec<Lint> {
    lints_within(program, LINT_BUDGET)
}

/// [`lints`], enumerating at most `budget` evaluations per contract or rule; past it, paths decide
/// (at most `LINT_BUDGET` evaluations' worth). A budget of 0 sends every space to the paths (the
/// soundness test does).
pub fn lints_within(program: &Program, budget: usize) -> Vec<Lint> {
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
                related: None,
            });
            continue;
        }
        let mut uses = Uses::default();
        uses.contexts(contract);
        uses.settle();
        let Some(space) = space(program, &uses, &held, id) else { continue };
        let mut reached = vec![false; contract.contexts.len()];
        let judged = alike(consumers.iter().copied(), &uses);
        let walked = walk(&space, budget, judged.len(), |labels, path| {
            for (subject, _) in &judged {
                let run = path.map(|p| p.observer(program, subject));
                if let Some(i) = chosen(program, contract, labels.clone(), subject, observer(&run)) {
                    reached[i] = true;
                    if reached.iter().all(|r| *r) {
                        return Some(());
                    }
                }
            }
            None
        });
        let Walk::Covered(covered) = walked else { continue };
        for (context, _) in contract.contexts.iter().zip(&reached).filter(|(_, r)| !**r) {
            out.push(Lint {
                kind: LintKind::UnreachableContext,
                name: context.name.clone(),
                origin: context.origin.clone(),
                message: format!("context `{}` of `{id}` can never be chosen", context.name),
                proof: format!(
                    "for {}, and each consumer who may claim it ({} of {} users and teams), an earlier context matches first or its criteria are false",
                    covered.each("of the labels its contexts read"),
                    consumers.len(),
                    subjects.len()
                ),
                related: None,
            });
        }
    }
    for rules in program.rules.values() {
        for (i, rule) in rules.iter().enumerate() {
            let id = format!("{}.{}", rule.namespace, rule.name);
            let found = never_fires(program, rule, &id, &subjects, &held, budget)
                .or_else(|| shadowed(program, &rules[..i], rule, &id, &subjects, &held, budget));
            out.extend(found);
            out.extend(placement(program, rule, &id, &subjects, &held, budget));
        }
    }
    out
}

/// `rule` when its criteria are false for every class of the labels they read and every user and
/// team (as if it were alone: what earlier rules do to labels is a subset of every class).
fn never_fires(
    program: &Program,
    rule: &Rule,
    id: &str,
    subjects: &[Subject],
    held: &BTreeMap<String, BTreeSet<Value>>,
    budget: usize,
) -> Option<Lint> {
    let criteria = rule.criteria.as_ref()?;
    let mut uses = Uses::default();
    uses.decision(criteria);
    uses.settle();
    let space = space(program, &uses, held, id)?;
    let judged = alike(subjects, &uses);
    let walked = walk(&space, budget, judged.len(), |labels, path| {
        judged
            .iter()
            .any(|(subject, _)| {
                let run = path.map(|p| p.observer(program, subject));
                let env = Env { observer: observer(&run), ..Env::of_labels(program, labels, subject) };
                env.bool(criteria).unwrap_or(false)
            })
            .then_some(())
    });
    let Walk::Covered(covered) = walked else { return None };
    Some(Lint {
        kind: LintKind::RuleNeverFires,
        name: rule.name.clone(),
        origin: rule.origin.clone(),
        message: format!("rule `{id}` can never fire"),
        proof: format!(
            "its criteria are false for {}, and each user and team ({})",
            covered.each("of the labels they read"),
            subjects.len()
        ),
        related: None,
    })
}

/// `rule` when the rules before it in its namespace (`earlier`, in order) shadow it: run as the
/// resolver runs them (docs/language.md §7.2, §7.3) from every class of the labels they and
/// `rule` read, for every user and team, no run reaches `rule` with its criteria true (or
/// failing), and some run where they hold was rejected by an earlier rule. The runs start from every class, a superset of what
/// the rules of an enclosing group (the namespace's, before `system`'s) can leave, so this holds
/// for every claim; a rule whose criteria only earlier label changes make false is not reported.
fn shadowed(
    program: &Program,
    earlier: &[Rule],
    rule: &Rule,
    id: &str,
    subjects: &[Subject],
    held: &BTreeMap<String, BTreeSet<Value>>,
    budget: usize,
) -> Option<Lint> {
    // Only a rejection shadows; a rule without actions has nothing to shadow (APT0151 says so).
    let rejects = |r: &Rule| r.actions.iter().any(|a| matches!(a, Action::Reject { .. }));
    if rule.actions.is_empty() || !earlier.iter().any(rejects) {
        return None;
    }
    let mut uses = Uses::default();
    for r in earlier.iter().chain([rule]) {
        uses.rule(r);
    }
    uses.settle();
    // Each run evaluates up to every rule before it, and it: that many evaluations per class.
    let space = space(program, &uses, held, id)?;
    // For each earlier rule, the runs it rejected where `rule`'s criteria held (or failed).
    let mut rejected = vec![0usize; earlier.len()];
    let mut failed = 0;
    let judged = alike(subjects, &uses);
    let walked = walk(&space, budget, judged.len().saturating_mul(earlier.len() + 1), |start, path| {
        for &(subject, weight) in &judged {
            let observed = path.map(|p| p.observer(program, subject));
            let (labels, stop) = run(program, earlier, start.clone(), subject, observer(&observed));
            let holds = rule.criteria.as_ref().is_none_or(|c| {
                let env = Env { observer: observer(&observed), ..Env::of_labels(program, &labels, subject) };
                env.bool(c).unwrap_or(true)
            });
            match stop {
                _ if !holds => {}
                None => return Some(()),
                Some(Stop::Rejected(i)) => rejected[i] += weight,
                Some(Stop::Failed) => failed += weight,
            }
        }
        None
    });
    let Walk::Covered(covered) = walked else { return None };
    let first = rejected.iter().position(|n| *n > 0)?;
    let by: Vec<String> = earlier
        .iter()
        .zip(&rejected)
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("`{}.{}` in {n}", r.namespace, r.name))
        .collect();
    let runs = rejected.iter().sum::<usize>() + failed;
    let failed = if failed > 0 { format!(", or failed in an earlier rule ({failed})") } else { String::new() };
    let shadow = &earlier[first];
    Some(Lint {
        kind: LintKind::ShadowedRule,
        name: rule.name.clone(),
        origin: rule.origin.clone(),
        message: format!(
            "rule `{id}` is shadowed by `{}.{}`: it can only fire on claims rejected before it",
            shadow.namespace, shadow.name
        ),
        proof: format!(
            "the rules before it, run in order as the resolver runs them from {} and for each user and team ({}), never reach it with its criteria true: each of the {} runs where they hold was rejected first (by {}){failed}",
            covered.each("of the labels they read"),
            subjects.len(),
            runs,
            by.join(", ")
        ),
        related: Some((shadow.name.clone(), shadow.origin.clone())),
    })
}

/// How a run of rules stopped the claim.
enum Stop {
    /// Rejected by the rule at this index.
    Rejected(usize),
    /// An expression failed (the claim fails).
    Failed,
}

/// Runs `rules` on these labels for this consumer as the resolver does (criteria, then actions in
/// order; a rejection or a failure stops), and gives the labels they leave and how they stopped, if
/// they did. Placements are not evaluated: no expression walked here reads them (`cluster` makes
/// the lints give up), and a `place … namespace` failing only stops a claim that would otherwise
/// go on, so going on covers it.
fn run(
    program: &Program,
    rules: &[Rule],
    mut labels: BTreeMap<String, Value>,
    subject: &Subject,
    observer: Option<&dyn Observer>,
) -> (BTreeMap<String, Value>, Option<Stop>) {
    for (i, rule) in rules.iter().enumerate() {
        let fired = match &rule.criteria {
            None => Ok(true),
            Some(criteria) => Env { observer, ..Env::of_labels(program, &labels, subject) }.bool(criteria),
        };
        match fired {
            Err(_) => return (labels, Some(Stop::Failed)),
            Ok(false) => continue,
            Ok(true) => {}
        }
        for action in &rule.actions {
            match action {
                Action::Label(op) => {
                    if apply(program, op, &mut labels, subject, observer).is_err() {
                        return (labels, Some(Stop::Failed));
                    }
                }
                Action::Reject { .. } => return (labels, Some(Stop::Rejected(i))),
                Action::Place { .. } => {}
            }
        }
    }
    (labels, None)
}

/// The last `place` of `rule` (which overrides the others) when it gives no claim a valid
/// Kubernetes namespace: its literal text rules every value out, or its value is invalid (or
/// fails) for every class of the labels it reads and every user and team, or without `namespace`
/// the cluster's own is invalid.
fn placement(
    program: &Program,
    rule: &Rule,
    id: &str,
    subjects: &[Subject],
    held: &BTreeMap<String, BTreeSet<Value>>,
    budget: usize,
) -> Option<Lint> {
    let (cluster, namespace) = rule.actions.iter().rev().find_map(|action| match action {
        Action::Place { cluster, namespace } => Some((cluster, namespace.as_ref())),
        _ => None,
    })?;
    let proof = match namespace {
        None => {
            let own = program.clusters.get(cluster).and_then(|c| c.namespace.as_deref()).unwrap_or("default");
            if is_dns_label(own) {
                return None;
            }
            format!("without `namespace`, it places in the namespace of cluster `{cluster}`, {own:?}, which is not one")
        }
        Some(expr) => match fixed_text(expr) {
            Some(why) => why,
            None => never_valid(program, expr, id, subjects, held, budget)?,
        },
    };
    Some(Lint {
        kind: LintKind::InvalidPlacement,
        name: rule.name.clone(),
        origin: rule.origin.clone(),
        message: format!("rule `{id}` places claims on `{cluster}` in no valid Kubernetes namespace"),
        proof: format!(
            "a Kubernetes namespace name is a DNS-1123 label (1 to 63 characters among `a-z`, `0-9` and `-`, not starting or ending with `-`); {proof}; so every claim it places fails, unless a later rule places it again"
        ),
        related: None,
    })
}

/// Why no value of a namespace expression can be a valid name, whatever it interpolates: its
/// literal text already breaks the rule (values interpolated only add characters around it).
fn fixed_text(expr: &Expr) -> Option<String> {
    let parts = match expr {
        Expr::Const(Value::Str(name)) => {
            return (!is_dns_label(name)).then(|| format!("its namespace {name:?} is not one"));
        }
        Expr::Template(t) => &t.parts,
        _ => return None,
    };
    let text: Vec<&str> = parts
        .iter()
        .filter_map(|p| match p {
            TemplatePart::Text(s) => Some(s.as_str()),
            TemplatePart::Expr(_) => None,
        })
        .collect();
    if text.len() == parts.len() {
        let name = text.concat();
        return (!is_dns_label(&name)).then(|| format!("its namespace {name:?} is not one"));
    }
    if let Some(c) =
        text.iter().flat_map(|s| s.chars()).find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(format!("its text holds `{c}`, so no value interpolated into it gives one"));
    }
    if matches!(parts.first(), Some(TemplatePart::Text(s)) if s.starts_with('-')) {
        return Some("its text starts with `-`, so no value interpolated into it gives one".to_string());
    }
    if matches!(parts.last(), Some(TemplatePart::Text(s)) if s.ends_with('-')) {
        return Some("its text ends with `-`, so no value interpolated into it gives one".to_string());
    }
    let length: usize = text.iter().map(|s| s.len()).sum();
    (length > 63)
        .then(|| format!("its text alone is {length} characters long, so no value interpolated into it gives one"))
}

/// Why a namespace expression is invalid for every class of the labels it reads (only labels of
/// finite types can be enumerated there) and every user and team; `None` when some value is valid
/// or the lint cannot decide.
fn never_valid(
    program: &Program,
    expr: &Expr,
    id: &str,
    subjects: &[Subject],
    held: &BTreeMap<String, BTreeSet<Value>>,
    budget: usize,
) -> Option<String> {
    let mut uses = Uses::default();
    uses.namespace(expr);
    uses.settle();
    let space = space(program, &uses, held, id)?;
    let mut names = BTreeSet::new();
    let judged = alike(subjects, &uses);
    let walked = walk(&space, budget, judged.len(), |labels, path| {
        for (subject, _) in &judged {
            let run = path.map(|p| p.observer(program, subject));
            // A failure fails the claim as surely as an invalid name.
            if let Ok(value) = (Env { observer: observer(&run), ..Env::of_labels(program, labels, subject) }).eval(expr)
            {
                let name = value.to_string();
                if is_dns_label(&name) {
                    return Some(());
                }
                names.insert(name);
            }
        }
        None
    });
    let Walk::Covered(covered) = walked else { return None };
    let shown: Vec<String> = names.iter().take(3).map(|n| format!("{n:?}")).collect();
    let more = if names.len() > shown.len() { ", …" } else { "" };
    let values = if names.is_empty() { "it fails".to_string() } else { format!("{}{more}", shown.join(", ")) };
    Some(format!(
        "for {}, and each user and team ({}), it gives no valid one ({values})",
        covered.each("of the labels its namespace reads"),
        subjects.len()
    ))
}

/// The label classes `uses` reads, or `None` when the lint cannot decide (an expression reads
/// more than labels and the user, or a label cannot be split).
fn space(program: &Program, uses: &Uses, held: &BTreeMap<String, BTreeSet<Value>>, id: &str) -> Option<Classes> {
    if uses.beyond {
        return None;
    }
    label_space(|label| program.labels.get(label), uses, |_| false, held, id).ok()
}

/// One consumer of each kind the walked expressions tell apart (the first of each, in order),
/// with how many consumers it stands for: the evaluator reads a consumer only through `user.*`,
/// so consumers equal in every field those read give every evaluation the same result, and
/// judging one judges them all.
fn alike<'s>(subjects: impl IntoIterator<Item = &'s Subject>, uses: &Uses) -> Vec<(&'s Subject, usize)> {
    let mut kinds: BTreeMap<Vec<Option<Value>>, usize> = BTreeMap::new();
    let mut out: Vec<(&Subject, usize)> = Vec::new();
    for subject in subjects {
        let key: Vec<Option<Value>> = uses
            .user
            .iter()
            .map(|field| match field.as_str() {
                "name" => Some(Value::Str(subject.name.clone())),
                "team" => subject.team.clone().map(Value::Str),
                "groups" => Some(Value::List(subject.groups.iter().cloned().map(Value::Str).collect())),
                label => subject.labels.get(label.strip_prefix("labels.").unwrap_or(label)).cloned(),
            })
            .collect();
        let at = *kinds.entry(key).or_insert(out.len());
        if at == out.len() {
            out.push((subject, 0));
        }
        out[at].1 += 1;
    }
    out
}

/// How a lint's walk over a space ended.
enum Walk<T> {
    /// The judge found what makes the lint not hold (a context reached, a rule that fires…).
    Found(T),
    /// Every class was judged (enumerated, or on a path) and none stopped the walk.
    Covered(Covered),
    /// Past the budget: no lint.
    GaveUp,
}

/// How a space was covered, for a lint's proof.
struct Covered {
    classes: usize,
    /// The paths that covered it, past the enumeration budget.
    paths: Option<usize>,
}

impl Covered {
    /// "each of the N classes `what`", with the paths past the enumeration budget.
    fn each(&self, what: &str) -> String {
        match self.paths {
            None => format!("each of the {} classes {what}", self.classes),
            Some(paths) => format!(
                "each of the {} classes {what} (covered by {paths} paths, docs/verification.md §3)",
                self.classes
            ),
        }
    }
}

/// Judges every class of `space` (`cost` evaluations each: consumers × rule runs): enumerated
/// within `budget` evaluations, else path by path (§3) within [`LINT_BUDGET`] evaluations, each
/// path's judge given the path for its observers (every run on it must be observed, so that
/// every class the path stands for is judged alike). The judge stops the walk with a finding.
fn walk<T>(
    space: &Classes,
    budget: usize,
    cost: usize,
    mut judge: impl FnMut(&BTreeMap<String, Value>, Option<&sat::Path<'_>>) -> Option<T>,
) -> Walk<T> {
    let cost = cost.max(1);
    if space.size.saturating_mul(cost) <= budget {
        for n in 0..space.size {
            if let Some(found) = judge(&space.labels(n), None) {
                return Walk::Found(found);
            }
        }
        return Walk::Covered(Covered { classes: space.size, paths: None });
    }
    match sat::explore(&space.labels, LINT_BUDGET / cost, |path| judge(&space.chosen(path.chosen()), Some(path))) {
        sat::Explored::Found { found, .. } => Walk::Found(found),
        sat::Explored::Covered { paths } => Walk::Covered(Covered { classes: space.size, paths: Some(paths) }),
        sat::Explored::Budget { .. } => Walk::GaveUp,
    }
}

/// A run's observer as the evaluator takes it.
fn observer<'a>(run: &'a Option<sat::Run<'_, '_>>) -> Option<&'a dyn Observer> {
    run.as_ref().map(|r| r as &dyn Observer)
}

/// The context of `contract` chosen for these labels and this consumer, as the resolver chooses
/// it (§15.2 steps 2 and 3); `None` when none matches or an expression fails.
fn chosen(
    program: &Program,
    contract: &crate::ir::Contract,
    mut labels: BTreeMap<String, Value>,
    subject: &Subject,
    observer: Option<&dyn Observer>,
) -> Option<usize> {
    for op in &contract.ops {
        apply(program, op, &mut labels, subject, observer).ok()?;
    }
    let env = Env { observer, ..Env::of_labels(program, &labels, subject) };
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

/// A `set` or `remove`, as the resolver applies it.
fn apply(
    program: &Program,
    op: &LabelOp,
    labels: &mut BTreeMap<String, Value>,
    subject: &Subject,
    observer: Option<&dyn Observer>,
) -> Result<(), EvalError> {
    match op {
        LabelOp::Set { label, value } => {
            let value = Env { observer, ..Env::of_labels(program, labels, subject) }.eval(value)?;
            labels.insert(label.clone(), value);
        }
        LabelOp::Remove { label } => {
            labels.remove(label);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::Template;

    fn text(parts: &[Option<&str>]) -> Expr {
        let label = || Expr::Label("system.team".to_string());
        Expr::Template(Template {
            parts: parts
                .iter()
                .map(|p| match p {
                    Some(t) => TemplatePart::Text(t.to_string()),
                    None => TemplatePart::Expr(label()),
                })
                .collect(),
        })
    }

    #[test]
    fn literal_text_rules_out_every_value_only_when_no_interpolation_can_mend_it() {
        for invalid in [
            text(&[Some("Team-"), None]),
            text(&[Some("-"), None]),
            text(&[None, Some("-")]),
            text(&[Some(&"a".repeat(40)), None, Some(&"b".repeat(24))]),
            text(&[Some("a_b")]),
            Expr::Const(Value::Str(String::new())),
        ] {
            assert!(fixed_text(&invalid).is_some(), "{invalid:?}");
        }
        // Each can be valid for some value: an interpolation between the dashes, or text alone
        // that is a name.
        for near_miss in [
            text(&[Some("team-"), None]),
            text(&[None, Some("-"), None]),
            text(&[Some("team")]),
            text(&[Some(&"a".repeat(40)), None, Some(&"b".repeat(23))]),
        ] {
            assert_eq!(fixed_text(&near_miss), None, "{near_miss:?}");
        }
    }
}
