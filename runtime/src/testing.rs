//! Policy tests: the `test` blocks of a policy, run (docs/language.md §18; `aptc test`).
//!
//! Each test resolves the whole policy plus its own claims and users (on a copy of the
//! program: tests never see each other's), then checks each `expect` against the desired
//! state. Every expectation is checked, so a failing test reports all that is wrong with it,
//! each with what was expected and what resolution actually produced. Tests that add nothing
//! to the policy share one resolution of it.

use std::collections::BTreeSet;

use aptc_compiler::ir::{Expect, Origin, Program, TestCase, Value};

use crate::resolve::{ClaimOutcome, DesiredState, Instance, InstanceKind, Status, resolve, to_json};

/// The outcome of one test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestReport {
    /// `namespace.name`.
    pub test: String,
    pub origin: Origin,
    /// The expectations that do not hold, in the order written; empty when the test passed.
    pub failures: Vec<ExpectFailure>,
}

impl TestReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// An expectation that does not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectFailure {
    /// The expectation, as written (names resolved: `social.alice_dev`).
    pub expectation: String,
    pub origin: Origin,
    /// What was expected against what happened, with the claim's reason when it did not resolve.
    pub message: String,
}

/// Runs every test of `program`, in the program's order.
pub fn run_tests(program: &Program) -> Vec<TestReport> {
    let mut base: Option<DesiredState> = None;
    let mut reports = Vec::with_capacity(program.tests.len());
    for test in &program.tests {
        let report = if test.claims.is_empty() && test.users.is_empty() {
            let state = base.get_or_insert_with(|| resolve(program));
            check_test(test, state)
        } else {
            check_test(test, &resolve(&with_test(program, test)))
        };
        reports.push(report);
    }
    reports
}

/// Runs one test.
pub fn run_test(program: &Program, test: &TestCase) -> TestReport {
    check_test(test, &resolve(&with_test(program, test)))
}

/// The program with the test's users and claims added (claims kept in resolution order).
pub fn with_test(program: &Program, test: &TestCase) -> Program {
    let mut program = program.clone();
    program.tests.clear();
    for user in &test.users {
        program.users.insert(user.name.to_lowercase(), user.clone());
    }
    program.claims.extend(test.claims.iter().cloned());
    program.claims.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    program
}

/// Checks every expectation of `test` against `state`.
pub fn check_test(test: &TestCase, state: &DesiredState) -> TestReport {
    let failures = test
        .expects
        .iter()
        .filter_map(|expectation| {
            check(state, &expectation.expect).err().map(|message| ExpectFailure {
                expectation: describe(&expectation.expect),
                origin: expectation.origin.clone(),
                message,
            })
        })
        .collect();
    TestReport { test: test.id(), origin: test.origin.clone(), failures }
}

/// Whether `expect` holds in `state`; if not, why not.
pub fn check(state: &DesiredState, expect: &Expect) -> Result<(), String> {
    match expect {
        Expect::Resolved { claim } => {
            let outcome = outcome(state, claim)?;
            match outcome.status {
                Status::Resolved => Ok(()),
                _ => Err(format!("expected claim `{claim}` to resolve, but {}", not_resolved(outcome))),
            }
        }
        Expect::Rejected { claim, pattern } => {
            let outcome = outcome(state, claim)?;
            if outcome.status == Status::Resolved {
                return Err(format!(
                    "expected claim `{claim}` to be rejected, but it resolved{}",
                    resolved_to(state, outcome)
                ));
            }
            let Some(pattern) = pattern else { return Ok(()) };
            let regex = regex::Regex::new(pattern).map_err(|e| format!("invalid pattern {pattern:?}: {e}"))?;
            let reason = outcome.reason.as_deref().unwrap_or_default();
            if regex.is_match(reason) || regex.is_match(message_of(reason)) {
                Ok(())
            } else {
                Err(format!("claim `{claim}` {}, but the reason does not match {pattern:?}", not_resolved(outcome)))
            }
        }
        Expect::Instance { service, component, claim, context, cluster, namespace, values } => {
            let outcome = outcome(state, claim)?;
            if outcome.status != Status::Resolved {
                return Err(format!(
                    "expected claim `{claim}` to need an instance of `{service}.{component}`, but {}",
                    not_resolved(outcome)
                ));
            }
            let found = instances_of(state, claim, service, component);
            if found.is_empty() {
                return Err(format!(
                    "claim `{claim}` needs no instance of `{service}.{component}`; it needs instances of {}",
                    needed_components(state, claim)
                ));
            }
            let mut reports = Vec::new();
            for instance in &found {
                let mut wrong = Vec::new();
                if let Some(context) = context
                    && instance.context != *context
                {
                    wrong.push(format!("context: expected `{context}`, got `{}`", instance.context));
                }
                if let Some(cluster) = cluster
                    && instance.cluster != *cluster
                {
                    wrong.push(format!("cluster: expected `{}`, got `{}`", short(cluster), short(&instance.cluster)));
                }
                if let Some(namespace) = namespace
                    && instance.k8s_namespace != *namespace
                {
                    wrong.push(format!("namespace: expected {namespace:?}, got {:?}", instance.k8s_namespace));
                }
                for (key, expected) in values {
                    compare(&format!("values.{key}"), expected, instance.values.get(key), &mut wrong);
                }
                if wrong.is_empty() {
                    return Ok(());
                }
                reports.push((instance.key.as_str(), wrong));
            }
            Err(match reports.as_slice() {
                [(key, wrong)] => format!("the instance `{key}` differs: {}", wrong.join("; ")),
                _ => {
                    let each: Vec<String> =
                        reports.iter().map(|(key, wrong)| format!("`{key}`: {}", wrong.join("; "))).collect();
                    format!(
                        "none of the {} instances of `{service}.{component}` matches: {}",
                        reports.len(),
                        each.join(" | ")
                    )
                }
            })
        }
        Expect::NoInstance { service, component, claim } => {
            outcome(state, claim)?;
            let found = instances_of(state, claim, service, component);
            if found.is_empty() {
                Ok(())
            } else {
                let keys: Vec<String> = found.iter().map(|i| format!("`{}`", i.key)).collect();
                Err(format!(
                    "expected claim `{claim}` to need no instance of `{service}.{component}`, but it needs {}",
                    keys.join(", ")
                ))
            }
        }
        Expect::Instances { count } => {
            let actual = state.instances.values().filter(|i| i.kind != InstanceKind::Service).count();
            if i64::try_from(actual).is_ok_and(|n| n == *count) {
                Ok(())
            } else {
                Err(format!("expected {count} component instances in the desired state, got {actual}"))
            }
        }
    }
}

/// An expectation as it is written in a test, with resolved names.
pub fn describe(expect: &Expect) -> String {
    match expect {
        Expect::Resolved { claim } => format!("expect claim {claim} resolved"),
        Expect::Rejected { claim, pattern: None } => format!("expect claim {claim} rejected"),
        Expect::Rejected { claim, pattern: Some(p) } => format!("expect claim {claim} rejected matches {p:?}"),
        Expect::Instance { service, component, claim, context, cluster, namespace, values } => {
            let mut body = Vec::new();
            if let Some(context) = context {
                body.push(format!("context {context}"));
            }
            if let Some(cluster) = cluster {
                body.push(format!("cluster {}", short(cluster)));
            }
            if let Some(namespace) = namespace {
                body.push(format!("namespace {namespace:?}"));
            }
            if !values.is_empty() {
                body.push(format!("values {}", Value::Map(values.clone())));
            }
            let body = if body.is_empty() { String::new() } else { format!(" {{ {} }}", body.join("; ")) };
            format!("expect instance {service}.{component} for {claim}{body}")
        }
        Expect::NoInstance { service, component, claim } => {
            format!("expect no instance {service}.{component} for {claim}")
        }
        Expect::Instances { count } => format!("expect instances {count}"),
    }
}

fn outcome<'s>(state: &'s DesiredState, claim: &str) -> Result<&'s ClaimOutcome, String> {
    state.claims.get(claim).ok_or_else(|| format!("the policy has no claim `{claim}`"))
}

/// "it was rejected: REASON (at ORIGIN)" or "it failed: …".
fn not_resolved(outcome: &ClaimOutcome) -> String {
    let verb = match outcome.status {
        Status::Rejected => "it was rejected",
        _ => "it failed",
    };
    let at = outcome.reason_origin.as_ref().map(|o| format!(" (at {o})")).unwrap_or_default();
    format!("{verb}: {}{at}", outcome.reason.as_deref().unwrap_or("no reason given"))
}

fn resolved_to(state: &DesiredState, outcome: &ClaimOutcome) -> String {
    match outcome.root.as_ref().and_then(|key| state.instances.get(key)) {
        Some(root) => {
            format!(" (contract `{}`, context `{}`, cluster `{}`)", root.contract, root.context, short(&root.cluster))
        }
        None => String::new(),
    }
}

/// The message of a rule's rejection (the reason without "rejected by rule `NS.RULE`: "); any
/// other reason as it is.
fn message_of(reason: &str) -> &str {
    reason
        .strip_prefix("rejected by rule `")
        .and_then(|rest| rest.split_once("`: "))
        .map_or(reason, |(_, message)| message)
}

/// The component instances of `service.component` that `claim` needs.
fn instances_of<'s>(state: &'s DesiredState, claim: &str, service: &str, component: &str) -> Vec<&'s Instance> {
    state
        .instances
        .values()
        .filter(|i| i.service == service && i.component == component && i.claims.iter().any(|c| c.claim == claim))
        .collect()
}

/// The components the claim needs instances of, for "did you mean".
fn needed_components(state: &DesiredState, claim: &str) -> String {
    let needed: BTreeSet<String> = state
        .instances
        .values()
        .filter(|i| i.kind != InstanceKind::Service && i.claims.iter().any(|c| c.claim == claim))
        .map(|i| format!("`{}.{}`", i.service, i.component))
        .collect();
    if needed.is_empty() { "no component".to_string() } else { needed.into_iter().collect::<Vec<_>>().join(", ") }
}

/// Compares an expected value with the instance's: maps entry by entry (entries not expected
/// are not compared), anything else exactly.
fn compare(path: &str, expected: &Value, actual: Option<&serde_json::Value>, wrong: &mut Vec<String>) {
    let Some(actual) = actual else {
        wrong.push(format!("{path}: expected {}, but the instance has no such value", to_json(expected)));
        return;
    };
    match (expected, actual.as_object()) {
        (Value::Map(entries), Some(object)) => {
            for (key, value) in entries {
                compare(&format!("{path}.{key}"), value, object.get(key), wrong);
            }
        }
        _ => {
            let expected = to_json(expected);
            if expected != *actual {
                wrong.push(format!("{path}: expected {expected}, got {actual}"));
            }
        }
    }
}

/// A cluster's name for people (`us_east`, not `system.us_east`).
fn short(cluster: &str) -> &str {
    cluster.strip_prefix("system.").unwrap_or(cluster)
}

#[cfg(test)]
mod tests {
    use aptc_compiler::check::load_workspace;
    use aptc_compiler::db::{Database, Settings};
    use aptc_compiler::ir::lower::lower;
    use aptc_compiler::source::SourceMap;

    use super::*;

    const POLICY: &str = r#"namespace system

label env: "dev" | "prod" = "dev"
label replicas: int = 1

team web_team
team mobile_team

user "alice@example.com" {
    team web_team
}
user "carol@example.com" {
    team mobile_team
}

cluster east {
    namespace "apps"
}
cluster west {}

service web {
    component app chart "./app" {
        values { replicas = labels.replicas, image = { repository = "web", tag = "1.0" } }
    }
    component cache chart "./cache" {
        when labels.env == "prod"
    }
}

contract web {
    context prod when labels.env == "prod" {
        set labels.replicas = 3
        use web
    }
    context dev {
        allocate per user.name
        use web
    }
}

rule no_mobile weight 1 when user.team == "mobile_team" {
    reject "mobile developers build elsewhere"
}
rule prod_east weight 10 when labels.env == "prod" {
    place on east
}
rule dev_west weight 10 when labels.env == "dev" {
    place on west namespace "dev"
}

claim alice_dev {
    user "alice@example.com"
    contract web
}
claim carol_dev {
    user "carol@example.com"
    contract web
}
"#;

    fn program(tests: &str) -> Program {
        let mut sources = SourceMap::new();
        sources.add("system.apt".to_string(), POLICY.to_string());
        sources.add("tests.apt".to_string(), format!("namespace system\n\n{tests}"));
        let mut db = Database::default();
        let ws = load_workspace(&mut db, &sources, Settings::default());
        match lower(&db, ws) {
            Ok(program) => program,
            Err(errors) => panic!("{}", aptc_compiler::diagnostics::render::render(&sources, &errors, false)),
        }
    }

    fn failures(tests: &str) -> Vec<Vec<String>> {
        run_tests(&program(tests)).into_iter().map(|r| r.failures.into_iter().map(|f| f.message).collect()).collect()
    }

    #[test]
    fn expectations_that_hold_pass() {
        let reports = run_tests(&program(
            r#"test policy_claims {
    expect claim alice_dev resolved
    expect claim carol_dev rejected
    expect claim system.carol_dev rejected matches "^mobile developers"
    expect claim carol_dev rejected matches "no_mobile"
    expect instance web.app for alice_dev {
        context dev
        cluster west
        namespace "dev"
        values { replicas = 1, image = { tag = "1.0" } }
    }
    expect no instance web.cache for alice_dev
    expect no instance web.app for carol_dev
    expect instances 1
}

test own_claims_and_users {
    user "paul@example.com" {
        team web_team
    }
    claim paul_prod {
        user "paul@example.com"
        contract web
        labels { env = "prod" }
    }
    expect claim paul_prod resolved
    expect instance web.app for paul_prod {
        context prod
        cluster east
        namespace "apps"
        values { replicas = 3 }
    }
    expect instance web.cache for paul_prod
    expect instances 3
}
"#,
        ));
        assert_eq!(reports.len(), 2);
        for report in &reports {
            assert!(report.passed(), "{report:#?}");
        }
        assert_eq!(reports[0].test, "system.policy_claims");
        assert_eq!(reports[1].origin.line, 19);
    }

    #[test]
    fn each_failure_says_what_was_expected_and_what_happened() {
        let failures = failures(
            r#"test wrong {
    expect claim carol_dev resolved
    expect claim alice_dev rejected
    expect instance web.app for alice_dev {
        context prod
        cluster east
        values { replicas = 2, image = { tag = "2.0" }, missing = true }
    }
    expect instance web.cache for alice_dev
    expect instance web.app for carol_dev
    expect instances 7
}

test wrong_too {
    expect claim carol_dev rejected matches "desktop"
    expect no instance web.app for alice_dev
}
"#,
        );
        let [first, second] = failures.as_slice() else { panic!("{failures:#?}") };
        assert_eq!((first.len(), second.len()), (6, 2), "{failures:#?}");
        let failures: Vec<&String> =
            first[..2].iter().chain(&second[..1]).chain(&first[2..5]).chain(&second[1..]).chain(&first[5..]).collect();
        assert!(
            failures[0].starts_with("expected claim `system.carol_dev` to resolve, but it was rejected: rejected by rule `system.no_mobile`: mobile developers build elsewhere (at system.apt:41:6)"),
            "{}",
            failures[0]
        );
        assert!(failures[1].starts_with("expected claim `system.alice_dev` to be rejected, but it resolved (contract `system.web`, context `dev`, cluster `west`)"), "{}", failures[1]);
        assert!(failures[2].contains("but the reason does not match \"desktop\""), "{}", failures[2]);
        assert!(failures[3].contains("context: expected `prod`, got `dev`"), "{}", failures[3]);
        assert!(failures[3].contains("cluster: expected `east`, got `west`"), "{}", failures[3]);
        assert!(failures[3].contains("values.replicas: expected 2, got 1"), "{}", failures[3]);
        assert!(failures[3].contains("values.image.tag: expected \"2.0\", got \"1.0\""), "{}", failures[3]);
        assert!(
            failures[3].contains("values.missing: expected true, but the instance has no such value"),
            "{}",
            failures[3]
        );
        assert!(
            failures[4].contains("needs no instance of `system.web.cache`; it needs instances of `system.web.app`"),
            "{}",
            failures[4]
        );
        assert!(failures[5].contains("but it was rejected: rejected by rule `system.no_mobile`"), "{}", failures[5]);
        assert!(failures[6].starts_with("expected claim `system.alice_dev` to need no instance of `system.web.app`, but it needs `west/dev/system.web/dev/alice@example.com/app`"), "{}", failures[6]);
        assert_eq!(failures[7], "expected 7 component instances in the desired state, got 1");
    }

    #[test]
    fn tests_do_not_see_each_others_claims() {
        let failures = failures(
            r#"test first {
    claim extra {
        user "alice@example.com"
        contract web
        labels { env = "prod" }
    }
    expect instances 3
}

test second {
    expect instances 1
}
"#,
        );
        assert_eq!(failures, vec![Vec::<String>::new(), Vec::new()]);
    }

    #[test]
    fn descriptions_read_like_the_source() {
        let program = program(
            r#"test described {
    expect claim carol_dev rejected matches "mobile"
    expect instance web.app for alice_dev {
        cluster west
        values { replicas = 1 }
    }
    expect instances 1
}
"#,
        );
        let written: Vec<String> = program.tests[0].expects.iter().map(|e| describe(&e.expect)).collect();
        assert_eq!(
            written,
            [
                "expect claim system.carol_dev rejected matches \"mobile\"",
                "expect instance system.web.app for system.alice_dev { cluster west; values { replicas = 1 } }",
                "expect instances 1",
            ]
        );
    }

    #[test]
    fn rejection_messages_lose_the_rule_prefix() {
        assert_eq!(message_of("rejected by rule `system.r`: go away"), "go away");
        assert_eq!(message_of("no context of contract `x` matched"), "no context of contract `x` matched");
    }
}
