//! Policy tests: the `test` blocks of a policy, run (docs/language.md §18; `aptc test`).
//!
//! Each test resolves the whole policy plus its own claims and users (on a copy of the
//! program: tests never see each other's), then checks each `expect` against the desired
//! state. Every expectation is checked, so a failing test reports all that is wrong with it,
//! each with what was expected and what resolution actually produced. Tests that add nothing
//! to the policy share one resolution of it.

use std::collections::BTreeSet;

use crate::ir::{Expect, Origin, Program, TestCase, Value};

use crate::resolve::{ClaimOutcome, DesiredState, Instance, InstanceKind, Status, resolve};

/// The outcome of one test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestReport {
    /// `namespace.name`.
    pub test: String,
    pub origin: Origin,
    /// The expectations that do not hold, in the order written; empty when the test passed.
    pub failures: Vec<ExpectFailure>,
    /// Every expectation, held or not, in the order written, with what resolution produced: what
    /// a CI report (`aptc test --format json|junit`) shows for each test.
    pub results: Vec<ExpectResult>,
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
    /// What resolution produced, on its own (the part of `message` after "but").
    pub actual: String,
}

/// One expectation of a test and what resolution produced for it, whether it held or not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectResult {
    /// The expectation, as written (names resolved).
    pub expectation: String,
    pub origin: Origin,
    /// What resolution produced for it: the claim's status and reason, the instances found, the
    /// count.
    pub actual: String,
    /// Why it does not hold; `None` when it holds.
    pub failure: Option<String>,
}

impl ExpectResult {
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }
}

/// What checking one expectation found: what resolution produced, and whether that is what was
/// expected.
struct Checked {
    actual: String,
    failure: Option<String>,
}

impl Checked {
    fn held(actual: impl Into<String>) -> Checked {
        Checked { actual: actual.into(), failure: None }
    }

    fn failed(actual: impl Into<String>, message: String) -> Checked {
        Checked { actual: actual.into(), failure: Some(message) }
    }
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
    let results: Vec<ExpectResult> = test
        .expects
        .iter()
        .map(|expectation| {
            let checked = check(state, &expectation.expect);
            ExpectResult {
                expectation: describe(&expectation.expect),
                origin: expectation.origin.clone(),
                actual: checked.actual,
                failure: checked.failure,
            }
        })
        .collect();
    let failures = results
        .iter()
        .filter_map(|result| {
            result.failure.as_ref().map(|message| ExpectFailure {
                expectation: result.expectation.clone(),
                origin: result.origin.clone(),
                message: message.clone(),
                actual: result.actual.clone(),
            })
        })
        .collect();
    TestReport { test: test.id(), origin: test.origin.clone(), failures, results }
}

/// Whether `expect` holds in `state`, with what resolution produced; if it does not hold, why not.
fn check(state: &DesiredState, expect: &Expect) -> Checked {
    match expect {
        Expect::Resolved { claim } => {
            let outcome = match outcome(state, claim) {
                Ok(outcome) => outcome,
                Err(missing) => return missing,
            };
            match outcome.status {
                Status::Resolved => Checked::held(format!("resolved{}", resolved_to(state, outcome))),
                _ => Checked::failed(
                    status(outcome),
                    format!("expected claim `{claim}` to resolve, but it {}", not_resolved(outcome)),
                ),
            }
        }
        Expect::Rejected { claim, pattern } => {
            let outcome = match outcome(state, claim) {
                Ok(outcome) => outcome,
                Err(missing) => return missing,
            };
            if outcome.status == Status::Resolved {
                let actual = format!("resolved{}", resolved_to(state, outcome));
                return Checked::failed(
                    actual.clone(),
                    format!("expected claim `{claim}` to be rejected, but it {actual}"),
                );
            }
            let actual = status(outcome);
            let Some(pattern) = pattern else { return Checked::held(actual) };
            let regex = match regex::Regex::new(pattern) {
                Ok(regex) => regex,
                Err(e) => return Checked::failed(actual, format!("invalid pattern {pattern:?}: {e}")),
            };
            let reason = outcome.reason.as_deref().unwrap_or_default();
            if regex.is_match(reason) || regex.is_match(message_of(reason)) {
                Checked::held(actual)
            } else {
                let message =
                    format!("claim `{claim}` {}, but the reason does not match {pattern:?}", not_resolved(outcome));
                Checked::failed(actual, message)
            }
        }
        Expect::Instance { service, component, claim, context, cluster, namespace, values } => {
            let outcome = match outcome(state, claim) {
                Ok(outcome) => outcome,
                Err(missing) => return missing,
            };
            if outcome.status != Status::Resolved {
                return Checked::failed(
                    status(outcome),
                    format!(
                        "expected claim `{claim}` to need an instance of `{service}.{component}`, but it {}",
                        not_resolved(outcome)
                    ),
                );
            }
            let found = instances_of(state, claim, service, component);
            if found.is_empty() {
                let needed = needed_components(state, claim);
                return Checked::failed(
                    format!("instances of {needed}"),
                    format!(
                        "claim `{claim}` needs no instance of `{service}.{component}`; it needs instances of {needed}"
                    ),
                );
            }
            let mut reports = Vec::new();
            let mut seen = Vec::new();
            for instance in &found {
                let mut wrong = Vec::new();
                let mut got = vec![
                    format!("context `{}`", instance.context),
                    format!("cluster `{}`", short(&instance.cluster)),
                    format!("namespace {:?}", instance.k8s_namespace),
                ];
                if let Some(context) = context
                    && *instance.context != **context
                {
                    wrong.push(format!("context: expected `{context}`, got `{}`", instance.context));
                }
                if let Some(cluster) = cluster
                    && *instance.cluster != **cluster
                {
                    wrong.push(format!("cluster: expected `{}`, got `{}`", short(cluster), short(&instance.cluster)));
                }
                if let Some(namespace) = namespace
                    && *instance.k8s_namespace != **namespace
                {
                    wrong.push(format!("namespace: expected {namespace:?}, got {:?}", instance.k8s_namespace));
                }
                for (key, expected) in values {
                    let value = instance.values.get(key);
                    got.push(match value {
                        Some(value) => format!("values.{key} {value}"),
                        None => format!("no values.{key}"),
                    });
                    compare(&format!("values.{key}"), expected, value, &mut wrong);
                }
                let got = format!("instance `{}` ({})", instance.key, got.join(", "));
                if wrong.is_empty() {
                    return Checked::held(got);
                }
                seen.push(got);
                reports.push((instance.key.as_str(), wrong));
            }
            let message = match reports.as_slice() {
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
            };
            Checked::failed(seen.join("; "), message)
        }
        Expect::NoInstance { service, component, claim } => {
            if let Err(missing) = outcome(state, claim) {
                return missing;
            }
            let found = instances_of(state, claim, service, component);
            if found.is_empty() {
                Checked::held(format!("no instance of `{service}.{component}`"))
            } else {
                let keys: Vec<String> = found.iter().map(|i| format!("`{}`", i.key)).collect();
                let actual = format!("instance {}", keys.join(", "));
                Checked::failed(
                    actual,
                    format!(
                        "expected claim `{claim}` to need no instance of `{service}.{component}`, but it needs {}",
                        keys.join(", ")
                    ),
                )
            }
        }
        Expect::Instances { count } => {
            let actual = state.instances.values().filter(|i| i.kind != InstanceKind::Service).count();
            let got = format!("{actual} component instances");
            if i64::try_from(actual).is_ok_and(|n| n == *count) {
                Checked::held(got)
            } else {
                Checked::failed(got, format!("expected {count} component instances in the desired state, got {actual}"))
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

/// The claim's outcome; when the policy has no such claim, the failed check that says so.
fn outcome<'s>(state: &'s DesiredState, claim: &str) -> Result<&'s ClaimOutcome, Checked> {
    state
        .claims
        .get(claim)
        .map(|outcome| &**outcome)
        .ok_or_else(|| Checked::failed("no such claim", format!("the policy has no claim `{claim}`")))
}

/// "was rejected: REASON (at ORIGIN)" or "failed: …": what happened to a claim, after its
/// name or "it".
fn not_resolved(outcome: &ClaimOutcome) -> String {
    match outcome.status {
        Status::Rejected => format!("was {}", status(outcome)),
        _ => status(outcome),
    }
}

/// "rejected: REASON (at ORIGIN)" or "failed: …": a claim that did not resolve, as a test's
/// actual result.
fn status(outcome: &ClaimOutcome) -> String {
    let verb = match outcome.status {
        Status::Rejected => "rejected",
        _ => "failed",
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
        .filter(|i| *i.service == *service && *i.component == *component && i.claims.iter().any(|c| c.claim == claim))
        .map(|i| &**i)
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
        wrong.push(format!("{path}: expected {}, but the instance has no such value", expected.to_json()));
        return;
    };
    match (expected, actual.as_object()) {
        (Value::Map(entries), Some(object)) => {
            for (key, value) in entries {
                compare(&format!("{path}.{key}"), value, object.get(key), wrong);
            }
        }
        _ => {
            let expected = expected.to_json();
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
    use super::*;

    #[test]
    fn rejection_messages_lose_the_rule_prefix() {
        assert_eq!(message_of("rejected by rule `system.r`: go away"), "go away");
        assert_eq!(message_of("no context of contract `x` matched"), "no context of contract `x` matched");
    }
}
