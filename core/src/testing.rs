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
fn check(state: &DesiredState, expect: &Expect) -> Result<(), String> {
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
