//! Soundness of `core::verify` (docs/verification.md): on small random policies and assertions,
//! the engine is compared with brute force over explicit domains of label values, each claim
//! resolved by the real resolver. Never `proved` when brute force finds a violation; every
//! counterexample, resolved again, violates the assertion. Likewise for the lint that runs rules
//! itself (a shadowed rule, `APT0410`): no claim resolved by the real resolver fires it, by
//! enumeration or past the lints' budget by paths. And `aptc diff --all-claims` past the budget
//! (the SAT-guided paths through both versions) finds the kinds of change enumeration finds.

use std::collections::BTreeMap;

use aptc_compiler::host::Analysis;
use aptc_core::eval::{Env, Placement};
use aptc_core::ir::{Claim, Consumer, Outcome, Program, Value};
use aptc_core::resolve::{Alone, Decision, DesiredState, Status};
use aptc_core::verify::{
    BUDGET, Comparison, Impact, LintKind, PATH_BUDGET, Verdict, compare_within, lints, lints_within, verify_one,
};
use proptest::prelude::*;

/// A condition over the labels and the consumer, as `.apt`.
fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["p", "q"]).prop_map(|c| format!("labels.a == \"{c}\"")),
        prop::sample::select(vec!["p", "q"]).prop_map(|c| format!("labels.a != \"{c}\"")),
        (-1i64..3).prop_map(|k| format!("labels.n < {k}")),
        (-1i64..3).prop_map(|k| format!("labels.n >= {k}")),
        prop::sample::select(vec!["x", "y"]).prop_map(|c| format!("labels.e == \"{c}\"")),
        Just("default(labels.a, \"p\") == \"q\"".to_string()),
        Just("labels.a in [\"p\", \"r\"]".to_string()),
        Just("user.team == \"t1\"".to_string()),
        Just("labels.flag".to_string()),
    ]
}

fn conditions() -> impl Strategy<Value = String> {
    (condition(), prop::option::of((prop::bool::ANY, condition()))).prop_map(|(a, rest)| match rest {
        None => a,
        Some((and, b)) => format!("{a} {} {b}", if and { "and" } else { "or" }),
    })
}

/// An assertion's expectation, as `.apt`.
fn expectation() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("expect resolved".to_string()),
        Just("expect rejected".to_string()),
        Just("expect failed".to_string()),
        Just("expect placed on east".to_string()),
        Just("expect never shares with others".to_string()),
        Just("expect shares with team t1".to_string()),
        Just("expect never reaches app".to_string()),
        (0i64..3).prop_map(|k| format!("expect that labels.n >= {k}")),
        Just("expect that labels.a == \"p\"".to_string()),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    a_default: bool,
    context_when: String,
    allocate: bool,
    set_n: Option<i64>,
    east_when: String,
    reject_when: Option<String>,
    /// A first rule that changes a label the later rules and the expectations read.
    relabel: Option<(String, String)>,
    user_label: Option<String>,
    when: Option<String>,
    expect: String,
}

/// A label change by a rule: later tests of the label see a value resolution set, not the claim's.
fn relabel() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "set labels.a = \"p\"",
        "set labels.a = \"r\"",
        "remove labels.a",
        "set labels.n = 1",
        "set labels.e = \"x\"",
    ])
    .prop_map(str::to_string)
}

fn case() -> impl Strategy<Value = Case> {
    (
        prop::bool::ANY,
        conditions(),
        prop::bool::ANY,
        prop::option::of(0i64..3),
        conditions(),
        prop::option::of(conditions()),
        prop::option::of((conditions(), relabel())),
        prop::option::of(prop::sample::select(vec!["p", "q"]).prop_map(str::to_string)),
        prop::option::of(conditions()),
        expectation(),
    )
        .prop_map(
            |(a_default, context_when, allocate, set_n, east_when, reject_when, relabel, user_label, when, expect)| {
                Case {
                    a_default,
                    context_when,
                    allocate,
                    set_n,
                    east_when,
                    reject_when,
                    relabel,
                    user_label,
                    when,
                    expect,
                }
            },
        )
}

fn policy(case: &Case) -> String {
    let a = if case.a_default { "label a: string = \"q\"" } else { "label a: string" };
    let set_n = case.set_n.map(|n| format!("        set labels.n = {n}\n")).unwrap_or_default();
    let allocate = if case.allocate { "        allocate per labels.a\n" } else { "" };
    let reject = case
        .reject_when
        .as_ref()
        .map(|w| format!("rule no weight 5 when {w} {{\n    reject \"no\"\n}}\n"))
        .unwrap_or_default();
    let relabel = case
        .relabel
        .as_ref()
        .map(|(w, action)| format!("rule relabel weight 1 when {w} {{\n    {action}\n}}\n"))
        .unwrap_or_default();
    let user_labels = case
        .user_label
        .as_ref()
        .map(|v| format!(" {{\n    team t1\n    labels {{ a = \"{v}\" }}\n}}"))
        .unwrap_or_else(|| " {\n    team t1\n}".into());
    let when = case.when.as_ref().map(|w| format!("    when {w}\n")).unwrap_or_default();
    format!(
        r#"namespace system

{a}
label n: int
label e: "x" | "y" | "z" = "z"
label flag: bool = false
team t1
team t2
user "u1@x"{user_labels}
user "u2@x" {{
    team t2
}}
cluster east {{}}
cluster west {{}}
service app {{
    component web chart "nginx" {{
        version "1.0"
        values {{ a = default(labels.a, "none") }}
    }}
}}
contract app {{
    context first when {ctx} {{
{set_n}{allocate}        use app
    }}
    context other {{
        use app
    }}
}}
rule east weight 10 when {east} {{
    place on east
}}
rule west weight 20 when not ({east}) {{
    place on west
}}
{relabel}{reject}
claim policy_claim {{
    user "u1@x"
    contract app
    labels {{ a = "p", n = 1 }}
}}

assert it {{
{when}    {expect}
}}
"#,
        ctx = case.context_when,
        east = case.east_when,
        expect = case.expect,
    )
}

/// Every claim of `system.app` over the explicit domains, by each of the policies' consumers:
/// every `step`-th label set of [`label_sets`] for each consumer.
fn explicit_claims(name: &'static str, step: usize) -> impl Iterator<Item = Claim> {
    let consumers = [
        Consumer::User("u1@x".into()),
        Consumer::User("u2@x".into()),
        Consumer::Team("t1".into()),
        Consumer::Team("t2".into()),
    ];
    consumers.into_iter().flat_map(move |consumer| {
        label_sets().into_iter().step_by(step).map(move |labels| Claim {
            namespace: "system".into(),
            name: name.into(),
            consumer: consumer.clone(),
            contract: "system.app".into(),
            labels: labels.into(),
            origin: Default::default(),
        })
    })
}

/// Explicit domains, wider than the engine's classes.
fn label_sets() -> Vec<BTreeMap<String, Value>> {
    let a: Vec<Option<Value>> = [None, Some(""), Some("p"), Some("q"), Some("r"), Some("zz")]
        .into_iter()
        .map(|v| v.map(|s| Value::Str(s.to_string())))
        .collect();
    let n: Vec<Option<Value>> = std::iter::once(None).chain((-3i64..5).map(|k| Some(Value::Int(k)))).collect();
    let e: Vec<Option<Value>> =
        [None, Some("x"), Some("y"), Some("z")].into_iter().map(|v| v.map(|s| Value::Str(s.into()))).collect();
    let flag = [None, Some(Value::Bool(true)), Some(Value::Bool(false))];
    let mut out = Vec::new();
    for a in &a {
        for n in &n {
            for e in &e {
                for f in &flag {
                    let mut map = BTreeMap::new();
                    for (k, v) in [("system.a", a), ("system.n", n), ("system.e", e), ("system.flag", f)] {
                        if let Some(v) = v {
                            map.insert(k.to_string(), v.clone());
                        }
                    }
                    out.push(map);
                }
            }
        }
    }
    out
}

/// Whether the assertion's `when` holds and its expectation fails for `claim`: checked here
/// from the resolved state, independently of the engine.
fn violates(program: &Program, claim: &Claim, sharing: &DesiredState) -> bool {
    let assertion = &program.assertions[0];
    let access = aptc_core::access::Access::new(program);
    let subject = match &claim.consumer {
        Consumer::User(u) => access.user(u).unwrap(),
        Consumer::Team(t) => access.team(t).unwrap(),
    };
    let id = claim.id();
    if let Some(criteria) = &assertion.criteria {
        let mut labels = std::collections::BTreeMap::clone(&claim.labels);
        labels.extend(subject.labels.clone());
        let env = Env {
            program,
            labels: &labels,
            user: &subject,
            claim: (&claim.name, &claim.namespace, &id),
            placement: None,
            instance: None,
            discovery: None,
            values: None,
            observer: None,
        };
        if env.bool(criteria) != Ok(true) {
            return false;
        }
    }
    let state = Alone::new(program).resolve(claim, false);
    let outcome = &state.claims[&id];
    let resolved = outcome.status == Status::Resolved;
    let consumer_of = |c: &str| program.claims.iter().find(|p| p.id() == c).map(|p| p.consumer.clone());
    let shared_with = |pred: &dyn Fn(&Consumer) -> bool| {
        state.instances.keys().any(|k| {
            sharing
                .instances
                .get(k)
                .is_some_and(|i| i.claims.iter().any(|u| consumer_of(&u.claim).is_some_and(|c| pred(&c))))
        })
    };
    match &assertion.expects[0].expect {
        Outcome::Resolved => !resolved,
        Outcome::Rejected => resolved,
        Outcome::Failed => outcome.status != Status::Failed,
        Outcome::PlacedOn { clusters } => {
            resolved && state.instances.values().any(|i| !clusters.iter().any(|c| **c == *i.cluster))
        }
        Outcome::Reaches { never: true, .. } => state.instances.values().any(|i| &*i.contract == "system.app"),
        Outcome::Shares { never: true, .. } => shared_with(&|c| *c != claim.consumer),
        Outcome::Shares { never: false, .. } => !shared_with(&|c| match c {
            Consumer::Team(t) => &**t == "t1",
            Consumer::User(u) => program.users[&**u].team.as_deref() == Some("t1"),
        }),
        Outcome::That { expr } => {
            if !resolved {
                return false;
            }
            let labels: BTreeMap<String, Value> = outcome
                .labels
                .as_deref()
                .unwrap()
                .iter()
                .map(|(k, v)| {
                    let v = match v {
                        serde_json::Value::String(s) => Value::Str(s.clone()),
                        serde_json::Value::Number(n) => Value::Int(n.as_i64().unwrap()),
                        serde_json::Value::Bool(b) => Value::Bool(*b),
                        other => panic!("unexpected label value {other}"),
                    };
                    (k.clone(), v)
                })
                .collect();
            let root = &state.instances[outcome.root.as_ref().unwrap()];
            let placement = Placement { cluster: root.cluster.to_string(), namespace: root.k8s_namespace.to_string() };
            let env = Env {
                program,
                labels: &labels,
                user: &subject,
                claim: (&claim.name, &claim.namespace, &id),
                placement: Some(&placement),
                instance: None,
                discovery: None,
                values: None,
                observer: None,
            };
            env.bool(expr) != Ok(true)
        }
        other => panic!("not generated: {other:?}"),
    }
}

/// A rule's action, as `.apt`: rejections often, so that rules shadow each other.
fn action() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just("reject \"no\"".to_string()),
        1 => (0i64..3).prop_map(|k| format!("set labels.n = {k}")),
        1 => prop::sample::select(vec!["p", "q"]).prop_map(|c| format!("set labels.a = \"{c}\"")),
        1 => Just("remove labels.a".to_string()),
    ]
}

/// A policy of a few rules (`r1`, `r2`, … in that order, each with criteria or none) over the
/// labels of [`label_sets`], after one that places everything.
fn rules_policy(a_default: bool, rules: &[(Option<String>, String)]) -> String {
    let a = if a_default { "label a: string = \"q\"" } else { "label a: string" };
    let rules: String = rules
        .iter()
        .enumerate()
        .map(|(i, (when, action))| {
            let when = when.as_ref().map(|w| format!(" when {w}")).unwrap_or_default();
            format!("rule r{} weight 1{when} {{\n    {action}\n}}\n", i + 1)
        })
        .collect();
    format!(
        r#"namespace system

{a}
label n: int
label e: "x" | "y" | "z" = "z"
label flag: bool = false
team t1
team t2
user "u1@x" {{
    team t1
}}
user "u2@x" {{
    team t2
}}
cluster east {{}}
service app {{
    component web chart "nginx" {{
        version "1.0"
    }}
}}
contract app {{
    context all {{
        use app
    }}
}}
rule everything_east {{
    place on east
}}
{rules}
claim policy_claim {{
    user "u1@x"
    contract app
}}
"#
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn a_shadowed_or_never_firing_rule_fires_for_no_claim(
        a_default in prop::bool::ANY,
        rules in prop::collection::vec((prop::option::of(conditions()), action()), 2..5),
    ) {
        let text = rules_policy(a_default, &rules);
        let mut analysis = Analysis::of_texts([("policy.apt", text.clone())]);
        let Ok(program) = analysis.lower() else { return Ok(()) };
        // The same lints past a budget of 0 (every rule through the SAT-guided paths, §3).
        let found = lints(&program);
        let by_paths = lints_within(&program, 0);
        let named = |all: &[aptc_core::verify::Lint]| all.iter().map(|l| (l.kind, l.name.clone())).collect::<Vec<_>>();
        prop_assert_eq!(named(&found), named(&by_paths), "{}", text);
        // Neither a shadowed rule nor one that never fires fires for any claim.
        let shadowed: Vec<_> = found
            .into_iter()
            .chain(by_paths)
            .filter(|l| matches!(l.kind, LintKind::ShadowedRule | LintKind::RuleNeverFires))
            .map(|l| (format!("system.{}", l.name), l.origin, l.kind))
            .collect();
        if shadowed.is_empty() {
            return Ok(());
        }
        for claim in explicit_claims("possible", 1) {
                let state = Alone::new(&program).resolve(&claim, true);
                let outcome = &state.claims[&claim.id()];
                for (rule, origin, kind) in &shadowed {
                    let fired = outcome.decisions.iter().any(|d| matches!(d, Decision::Rule { rule: r, fired: true, .. } if **r == **rule));
                    // A shadowed rule is not even evaluated; one that never fires may fail.
                    let failed_there = *kind == LintKind::ShadowedRule && outcome.status == Status::Failed && outcome.reason_origin.as_deref() == Some(origin);
                    prop_assert!(!fired && !failed_there, "{rule} is called shadowed, but {claim:?} reaches it: {outcome:?}\n{text}");
                }
        }
    }

    #[test]
    fn verify_agrees_with_brute_force(case in case()) {
        let text = policy(&case);
        let mut analysis = Analysis::of_texts([("policy.apt", text.clone())]);
        let Ok(program) = analysis.lower() else {
            // A generated policy the checker refuses (e.g. an always-false context) says nothing.
            return Ok(());
        };
        let report = verify_one(&program, &program.assertions[0], BUDGET);
        let sharing = aptc_core::resolve::resolve(&program);
        let brute = explicit_claims("it_counterexample", 1).find(|claim| violates(&program, claim, &sharing));
        match &report.verdict {
            Verdict::Proved => prop_assert!(brute.is_none(), "proved, but brute force finds {brute:?}\n{text}"),
            Verdict::Violated { counterexample } => {
                prop_assert!(violates(&program, &counterexample.claim, &sharing), "counterexample does not violate\n{counterexample:?}\n{text}");
            }
            Verdict::Unknown { reason } => prop_assert!(false, "unknown: {reason}\n{text}"),
        }
        // The same assertion past a budget of 0: every space through the SAT-guided paths (§3).
        let by_solver = verify_one(&program, &program.assertions[0], 0);
        prop_assert!(by_solver.solver.is_some() || by_solver.claims == 0, "not by the solver: {by_solver:?}");
        match &by_solver.verdict {
            Verdict::Proved => {
                prop_assert!(brute.is_none(), "proved by the solver, but brute force finds {brute:?}\n{text}");
                prop_assert!(matches!(report.verdict, Verdict::Proved), "the solver proves what enumeration does not\n{text}");
            }
            Verdict::Violated { counterexample } => {
                prop_assert!(violates(&program, &counterexample.claim, &sharing), "the solver's counterexample does not violate\n{counterexample:?}\n{text}");
                prop_assert!(matches!(report.verdict, Verdict::Violated { .. }), "the solver finds what enumeration does not\n{text}");
            }
            Verdict::Unknown { reason } => prop_assert!(false, "unknown by the solver: {reason}\n{text}"),
        }
        // And never more paths than enumeration's classes.
        prop_assert!(by_solver.claims <= report.claims.max(1), "{} paths for {} classes\n{text}", by_solver.claims, report.claims);
    }

    #[test]
    fn compare_by_paths_agrees_with_enumeration(old in case().boxed(), new in case().boxed()) {
        compare_agrees(&old, &new)?;
    }
}

/// `compare_by_paths_agrees_with_enumeration`'s body: two versions of the policy of
/// `verify_agrees_with_brute_force` (their cases boxed: two value trees of that size side by
/// side overflow a debug build's test thread), compared by enumeration and, with a budget of 0,
/// by the SAT-guided paths through both.
fn compare_agrees(old: &Case, new: &Case) -> Result<(), TestCaseError> {
    let (old_text, new_text) = (policy(old), policy(new));

    let Ok(old) = Analysis::of_texts([("policy.apt", old_text.clone())]).lower() else { return Ok(()) };
    let Ok(new) = Analysis::of_texts([("policy.apt", new_text.clone())]).lower() else { return Ok(()) };
    let enumerated = compare_within(&old, &new, BUDGET, PATH_BUDGET);
    let by_paths = compare_within(&old, &new, 0, PATH_BUDGET);
    prop_assert!(by_paths.solver.is_some() || by_paths.claims == 0, "not by the solver: {by_paths:?}");
    let kinds = |c: &Comparison| match &c.verdict {
        Impact::Unchanged => Some(Vec::new()),
        Impact::Changed { kinds } => {
            let mut all: Vec<_> =
                kinds.iter().map(|k| (k.aspect, k.contract.clone(), k.before.clone(), k.after.clone())).collect();
            all.sort();
            Some(all)
        }
        Impact::Unknown { .. } => None,
    };
    prop_assert_eq!(kinds(&enumerated), kinds(&by_paths), "{}\n---\n{}", old_text, new_text);
    prop_assert!(
        by_paths.claims <= enumerated.claims.max(1),
        "{} paths for {} classes",
        by_paths.claims,
        enumerated.claims
    );
    // Unchanged by the paths: no claim of the explicit domains changes outcome.
    if matches!(by_paths.verdict, Impact::Unchanged) {
        let (a, b) = (Alone::new(&old), Alone::new(&new));
        for claim in explicit_claims("possible", 7) {
            let outcome = |state: DesiredState| state.claims[&claim.id()].clone();
            let (x, y) = (outcome(a.resolve(&claim, false)), outcome(b.resolve(&claim, false)));
            prop_assert!(
                x.status == y.status && x.reason == y.reason,
                "unchanged, but {claim:?} goes from {x:?} to {y:?}\n{old_text}\n---\n{new_text}"
            );
        }
    }
    Ok(())
}
