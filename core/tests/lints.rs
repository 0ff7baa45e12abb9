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

#[test]
fn a_rule_an_earlier_rejection_shadows_is_found_and_a_near_miss_is_not() {
    // `b_ops_too_many` fires only past 10 replicas, which `a_too_many` rejects first;
    // `c_ops_over_three` also fires at 4 and 5, which nothing rejects.
    let rules = r#"
contract app {
    context all {
        use app
    }
}

rule a_too_many when labels.replicas > 5 {
    reject "too many"
}
rule b_ops_too_many when user.team == "ops" and labels.replicas > 10 {
    reject "ops: too many"
}
rule c_ops_over_three when user.team == "ops" and labels.replicas > 3 {
    set labels.owner = "ops"
}
"#;
    let text = format!("{BASE}\n{rules}");
    let program = common::compile(&[("system.apt", text.as_str())]);
    let found = lints(&program);
    assert_eq!(
        found.iter().map(|l| (l.kind, l.name.as_str())).collect::<Vec<_>>(),
        vec![(LintKind::ShadowedRule, "b_ops_too_many")]
    );
    assert_eq!(found[0].related.as_ref().map(|(name, _)| name.as_str()), Some("a_too_many"));
}

#[test]
fn rules_are_run_in_order_with_their_label_changes_before_a_rule_is_called_shadowed() {
    // A naive "its criteria imply the earlier rejection's" would call `c_six` shadowed: but
    // `b_bump` sets 6 on claims `a_reject_big` let through, so `c_six` fires on them. And
    // `big_first` comes before the rejection (weight 0 before weight 1): not shadowed either.
    let rules = r#"
contract app {
    context all {
        use app
    }
}

rule big_first when labels.replicas > 7 {
    set labels.owner = "big"
}
rule a_reject_big weight 1 when labels.replicas > 5 {
    reject "big"
}
rule b_bump weight 1 when labels.replicas == 5 {
    set labels.replicas = 6
}
rule c_six weight 1 when labels.replicas > 5 {
    set labels.owner = "six"
}
"#;
    assert_eq!(found(rules), vec![]);
    // Without the bump, the rejection does shadow it: the engine decided, it did not give up.
    let without =
        rules.replace("rule b_bump weight 1 when labels.replicas == 5 {\n    set labels.replicas = 6\n}\n", "");
    assert_eq!(found(&without), vec![(LintKind::ShadowedRule, "c_six".to_string())]);
}

#[test]
fn a_placement_in_no_valid_namespace_is_found_and_a_valid_one_is_not() {
    let rules = r#"
label zone: "EU" | "US" = "EU"
label tier: "gold" | "silver" = "gold"

cluster upper {
    namespace "Apps"
}

contract app {
    context all {
        use app
    }
}

rule a_constant {
    place on main namespace "Prod"
}
rule b_cluster_namespace {
    place on upper
}
rule c_trailing_dash {
    place on main namespace "${labels.tier}-"
}
rule d_enum_values {
    place on main namespace labels.zone
}
rule e_valid_for_every_tier {
    place on main namespace "${labels.tier}-apps"
}
rule f_string_label_can_be_valid {
    place on main namespace "team-${labels.owner}"
}
rule g_the_last_place_counts {
    place on main namespace "Bad"
    place on main
}
rule h_one_zone_valid {
    place on main namespace "${lower(labels.zone)}"
}
"#;
    assert_eq!(
        found(rules),
        vec![
            (LintKind::InvalidPlacement, "a_constant".to_string()),
            (LintKind::InvalidPlacement, "b_cluster_namespace".to_string()),
            (LintKind::InvalidPlacement, "c_trailing_dash".to_string()),
            (LintKind::InvalidPlacement, "d_enum_values".to_string()),
        ]
    );
}

#[test]
fn a_namespace_rule_is_shadowed_only_by_an_earlier_rule_of_its_own_group() {
    // `web`'s rules run before `system`'s, and only for `web`'s contracts: `web.too_many` shadows
    // `web.way_too_many`, but not `system.way_too_many`, which other namespaces' claims reach.
    let system = format!(
        "{BASE}\n{}",
        r#"
rule way_too_many when labels.replicas > 10 {
    reject "way too many"
}
"#
    );
    let web = r#"namespace web

import system

rule too_many when labels.replicas > 5 {
    reject "too many"
}
rule way_too_many when labels.replicas > 10 {
    reject "way too many"
}
"#;
    let program = common::compile(&[("system.apt", system.as_str()), ("web.apt", web)]);
    let found: Vec<_> = lints(&program).into_iter().map(|l| (l.kind, l.origin.file.to_string(), l.name)).collect();
    assert_eq!(found, vec![(LintKind::ShadowedRule, "web.apt".to_string(), "way_too_many".to_string())]);
}
