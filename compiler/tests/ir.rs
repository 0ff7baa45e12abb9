//! The IR round-trips through its file format, and refuses files of another version.

use std::path::Path;

use aptc_compiler::db::Settings;
use aptc_compiler::host::Analysis;
use aptc_core::ir::{IR_VERSION, LoadError, Program};

fn lower_example(name: &str) -> Program {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name);
    Analysis::open(&[root], Settings::default()).unwrap().lower().expect("the example checks clean")
}

#[test]
fn examples_lower_and_round_trip() {
    for example in ["quickstart", "guestbook", "twitter-analytics"] {
        let program = lower_example(example);
        assert!(!program.claims.is_empty(), "{example} has claims");
        let text = program.to_json();
        assert_eq!(Program::from_json(&text).unwrap(), program, "{example} round-trips");
        assert_eq!(lower_example(example).to_json(), text, "{example} lowers deterministically");
    }
}

/// `plan` loads a large policy without keeping syntax trees (`Analysis::open_to_lower`, its trees
/// freed file by file), a small one keeping them: what it reads while loading (users files,
/// manifest files, local charts) and the program it lowers are the same either way.
#[test]
fn loading_to_lower_gives_the_same_program() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let policies = [
        "examples/quickstart",
        "examples/guestbook",
        "examples/twitter-analytics",
        "tests/cases/clean/users_from_file",
    ];
    for policy in policies {
        let paths = [root.join(policy)];
        let mut kept = Analysis::open(&paths, Settings::default()).unwrap();
        let lowered = |analysis: &mut Analysis| analysis.lower().expect("the policy checks clean").to_json();
        let program = lowered(&mut kept);
        let checked = format!("{:?}", kept.check());
        for kept_up_to in [0, aptc_compiler::host::TREES_KEPT_UP_TO] {
            let mut to_lower = Analysis::open_to_lower_keeping(&paths, Settings::default(), kept_up_to).unwrap();
            assert_eq!(lowered(&mut to_lower), program, "{policy}, trees kept up to {kept_up_to} bytes");
            // Checking after loading to lower (parsing the files again if freed) says the same.
            assert_eq!(format!("{:?}", to_lower.check()), checked, "{policy}, trees kept up to {kept_up_to} bytes");
        }
    }
}

#[test]
fn lowered_program_resolves_names_and_orders_rules() {
    let program = lower_example("twitter-analytics");
    // Every reference is qualified and points at something that exists.
    for contract in program.contracts.values() {
        for context in &contract.contexts {
            assert!(program.services.contains_key(&context.service), "{} uses {}", contract.name, context.service);
        }
    }
    for claim in &program.claims {
        assert!(program.contracts.contains_key(&*claim.contract), "{} claims {}", claim.name, claim.contract);
    }
    for rules in program.rules.values() {
        assert!(rules.windows(2).all(|w| (w[0].weight, &w[0].name) <= (w[1].weight, &w[1].name)), "rules are in order");
    }
    let claims: Vec<(&str, &str)> = program.claims.iter().map(|c| (&*c.namespace, c.name.as_str())).collect();
    let mut sorted = claims.clone();
    sorted.sort();
    assert_eq!(claims, sorted, "claims are in resolution order");
}

#[test]
fn a_file_of_another_version_is_refused_with_a_clear_error() {
    let text =
        lower_example("quickstart").to_json().replacen(&format!("\"version\": {IR_VERSION}"), "\"version\": 999", 1);
    let error = Program::from_json(&text).unwrap_err();
    assert!(matches!(error, LoadError::Version { found: 999, .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("version 999") && message.contains("aptc build"), "{message}");
    assert!(matches!(Program::from_json("{\"format\": \"other\", \"version\": 1}"), Err(LoadError::NotIr(_))));
    assert!(matches!(Program::from_json("not json"), Err(LoadError::NotIr(_))));
}

#[test]
fn cluster_credentials_lower_to_where_the_kubeconfig_comes_from() {
    use aptc_core::ir::Credentials;
    let text = "namespace system\n\ncluster prod {\n    kubeconfig secret \"prod\"\n    context \"us\"\n}\n\
cluster eu {\n    kubeconfig secret \"fleet\" key \"eu.yaml\"\n}\n\ncluster home {\n    kubeconfig in_cluster\n}\n\n\
cluster laptop {\n    kubeconfig \"kube.yaml\"\n}\n";
    let program = Analysis::of_texts([("system.apt", text)]).lower().expect("clean");
    let credentials = |name: &str| program.clusters[&format!("system.{name}")].credentials.clone();
    assert_eq!(credentials("prod"), Some(Credentials::Secret { name: "prod".into(), key: "kubeconfig".into() }));
    assert_eq!(credentials("eu"), Some(Credentials::Secret { name: "fleet".into(), key: "eu.yaml".into() }));
    assert_eq!(credentials("home"), Some(Credentials::InCluster));
    assert_eq!(credentials("laptop"), None);
    assert_eq!(program.clusters["system.prod"].context.as_deref(), Some("us"));
    let json = program.to_json();
    assert_eq!(Program::from_json(&json).unwrap(), program, "round-trips");
    assert_eq!(json.matches("\"credentials\"").count(), 3, "absent where there are none: {json}");
}
