//! Policy tests (`aptc_core::testing`): expectations against the resolved state.

mod common;

use aptc_core::ir::*;
use aptc_core::testing::*;

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
    component app chart "oci://charts.example.com/app" {
        values { replicas = labels.replicas, image = { repository = "web", tag = "1.0" } }
    }
    component cache chart "oci://charts.example.com/cache" {
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
    common::compile(&[("system.apt", POLICY), ("tests.apt", &format!("namespace system\n\n{tests}"))])
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
