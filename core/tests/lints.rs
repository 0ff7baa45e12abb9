//! The verification engine's lints (`core::verify::lints`): each is a proof, so a context or rule
//! that some claim reaches is never reported, and what the classes cannot see gives no lint.

mod common;

use aptc_core::verify::{LintKind, lints};

const BASE: &str = r#"namespace system

label replicas: int = 1
label owner: string = ""

team web
team ops

user "ann@example.com" {
    team web
}
user "olga@example.com" {
    team ops
}

cluster main {}

service app {
    component web chart "nginx" {
        version "1.0"
    }
}

rule everything_on_main {
    place on main
}
"#;

fn found(extra: &str) -> Vec<(LintKind, String)> {
    let text = format!("{BASE}\n{extra}");
    let program = common::compile(&[("system.apt", text.as_str())]);
    lints(&program).into_iter().map(|l| (l.kind, l.name)).collect()
}

#[test]
fn a_context_shadowed_by_an_int_boundary_is_found_and_a_reachable_one_is_not() {
    let contract = r#"
contract app {
    context big when labels.replicas > 3 {
        use app
    }
    context huge when labels.replicas > 5 {
        use app
    }
    context exactly_three when labels.replicas == 3 {
        use app
    }
    context rest {
        use app
    }
}
"#;
    assert_eq!(found(contract), vec![(LintKind::UnreachableContext, "huge".to_string())]);
}

#[test]
fn a_context_only_one_team_reaches_is_reachable() {
    let contract = r#"
contract app {
    context ops when user.team == "ops" {
        use app
    }
    context web when user.team == "web" {
        use app
    }
    context nobody when user.team == "web" {
        use app
    }
}
"#;
    assert_eq!(found(contract), vec![(LintKind::UnreachableContext, "nobody".to_string())]);
}

#[test]
fn a_contract_label_set_before_the_contexts_decides() {
    // The contract sets replicas to 2: `big` is never chosen, `small` always.
    let contract = r#"
contract app {
    set labels.replicas = 2
    context big when labels.replicas > 3 {
        use app
    }
    context small {
        use app
    }
}
"#;
    assert_eq!(found(contract), vec![(LintKind::UnreachableContext, "big".to_string())]);
}

#[test]
fn what_the_classes_cannot_see_gives_no_lint() {
    // `lower` makes `owner` opaque; `claim.name` is not a label: no proof either way.
    let contract = r#"
contract app {
    context a when lower(labels.owner) == "x" {
        use app
    }
    context b when lower(labels.owner) == "x" {
        use app
    }
    context c when claim.name == "x" {
        use app
    }
    context d when claim.name == "x" {
        use app
    }
}

rule opaque when lower(labels.owner) == "x" and lower(labels.owner) == "y" {
    reject "never"
}
"#;
    assert_eq!(found(contract), vec![]);
}

#[test]
fn a_rule_no_claim_satisfies_is_found() {
    let rules = r#"
contract app {
    context all {
        use app
    }
}

rule contradiction when labels.replicas > 10 and labels.replicas < 5 {
    reject "never"
}
rule possible when labels.replicas > 10 or user.team == "nobody" {
    reject "sometimes"
}
rule no_such_team when user.team == "nobody" {
    reject "never"
}
"#;
    assert_eq!(
        found(rules),
        vec![
            (LintKind::RuleNeverFires, "contradiction".to_string()),
            (LintKind::RuleNeverFires, "no_such_team".to_string())
        ]
    );
}
