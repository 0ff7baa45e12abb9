//! Resolver failures that a clean policy cannot produce, because `aptc check` rejects them
//! statically: a cycle through contracts reached at run time, a claim whose consumer does not
//! exist, a consumer without the consumer role on a namespace its tree enters. Each test lowers
//! a clean policy, mutates the IR the way a stale or hand-edited `.aptir` could, and checks that
//! the bad claim fails with a clear reason while every other claim still resolves ("one bad
//! claim never blocks the others"). Also: resolution is deterministic, byte for byte.

mod common;

use std::path::PathBuf;

use aptc_core::ir::{Consumer, Program, Source};
use aptc_core::resolve::{Decision, DesiredState, Status, resolve};

const SYSTEM: &str = r#"
namespace system

team web_team
team platform_team

user "ada@example.com" {
    team web_team
    groups ["platform-users"]
}
user "bob@example.com" {
    team web_team
    groups ["platform-users"]
}

cluster local {
    namespace "apps"
}

rule everything_on_local {
    place on local
}

grant consumer on web when user.team == "web_team"
grant consumer on platform when "platform-users" in user.groups
"#;

const PLATFORM: &str = r#"
namespace platform owned_by platform_team

service db {
    component postgres chart "bitnami/postgresql" {
        version "13.2.0"
        discovery { host = "${instance.name}" }
    }
}

contract db {
    context shared {
        use db
    }
}

service queue {
    component store uses db
    component broker chart "bitnami/rabbitmq" {
        version "12.0.0"
        after store
        values { db = store.discovery.host }
        discovery { amqp = "amqp://${instance.name}:5672" }
    }
}

contract queue {
    context shared {
        use queue
    }
}
"#;

const WEB: &str = r#"
namespace web owned_by web_team

service shop {
    component queue uses platform.queue
    component app chart "bitnami/nginx" {
        version "15.0.0"
        after queue
        values { queue = queue.discovery.amqp }
    }
}

contract shop {
    context per_user {
        allocate per user.name
        use shop
    }
}

service site {
    component app chart "bitnami/nginx" {
        version "15.0.0"
    }
}

contract site {
    context per_user {
        allocate per user.name
        use site
    }
}

claim ada_db {
    user "ada@example.com"
    contract platform.db
}

claim ada_shop {
    user "ada@example.com"
    contract shop
}

claim bob_shop {
    user "bob@example.com"
    contract shop
}

claim bob_site {
    user "bob@example.com"
    contract site
}
"#;

/// Lowers in-memory sources the way the CLI lowers files; panics unless the policy checks clean.
fn lower_sources(files: &[(&str, &str)]) -> Program {
    common::compile(files)
}

fn policy() -> Program {
    lower_sources(&[("system.apt", SYSTEM), ("platform.apt", PLATFORM), ("web.apt", WEB)])
}

fn status(state: &DesiredState, claim: &str) -> Status {
    state.claims.get(claim).unwrap_or_else(|| panic!("no outcome for {claim}")).status
}

fn reason(state: &DesiredState, claim: &str) -> String {
    state.claims[claim].reason.as_deref().unwrap_or_default().to_string()
}

/// Nothing of a failed claim may enter the desired state.
fn assert_no_instances_of(state: &DesiredState, claim: &str) {
    for instance in state.instances.values() {
        assert!(
            instance.claims.iter().all(|c| c.claim != claim),
            "instance {} carries claim {claim}, which did not resolve",
            instance.key
        );
    }
}

fn assert_resolved(state: &DesiredState, claim: &str) {
    assert_eq!(status(state, claim), Status::Resolved, "{claim}: {}", reason(state, claim));
    let outcome = &state.claims[claim];
    let root = outcome.root.as_ref().unwrap_or_else(|| panic!("{claim} resolved without a root"));
    assert!(state.instances.contains_key(root), "{claim}'s root {root} is not in the state");
    assert!(state.instances[root].claims.iter().any(|c| c.claim == claim && c.depth == 0));
}

#[test]
fn the_clean_policy_resolves_every_claim() {
    let state = resolve(&policy());
    for claim in ["web.ada_db", "web.ada_shop", "web.bob_shop", "web.bob_site"] {
        assert_resolved(&state, claim);
    }
    // One platform.db instance shared by ada_db (depth 0) and both shops (depth 2).
    let db: Vec<_> =
        state.instances.values().filter(|i| &*i.contract == "platform.db" && &*i.component == "root").collect();
    assert_eq!(db.len(), 1, "{db:#?}");
    let mut users: Vec<(&str, usize)> = db[0].claims.iter().map(|c| (c.claim.as_str(), c.depth)).collect();
    users.sort();
    assert_eq!(users, [("web.ada_db", 0), ("web.ada_shop", 2), ("web.bob_shop", 2)]);
}

#[test]
fn a_cycle_through_contracts_fails_the_claims_that_reach_it() {
    let mut program = policy();
    // platform.queue's `store` component now uses web.shop, whose service uses platform.queue:
    // web.shop → platform.queue → web.shop. `aptc check` would report APT0402.
    let queue = program.services.get_mut("platform.queue").unwrap();
    let store = queue.components.iter_mut().find(|c| c.name == "store").unwrap();
    store.source = Source::Uses { contract: "web.shop".to_string() };
    let state = resolve(&program);

    for claim in ["web.ada_shop", "web.bob_shop"] {
        assert_eq!(status(&state, claim), Status::Failed, "{claim}: {:?}", state.claims[claim]);
        let reason = reason(&state, claim);
        assert!(reason.contains("cycle"), "{claim}: {reason}");
        assert!(reason.contains("web.shop") && reason.contains("platform.queue"), "{claim}: {reason}");
        assert_no_instances_of(&state, claim);
        // The decision chain shows how far it got: web.shop at depth 0, platform.queue at 1.
        let entered: Vec<(&str, usize)> = state.claims[claim]
            .decisions
            .iter()
            .filter_map(|d| match d {
                Decision::EnterContract { contract, depth } => Some((&**contract, *depth)),
                _ => None,
            })
            .collect();
        assert_eq!(entered, [("web.shop", 0), ("platform.queue", 1)], "{claim}");
    }
    // Claims that do not reach the cycle are unaffected.
    assert_resolved(&state, "web.ada_db");
    assert_resolved(&state, "web.bob_site");
    assert!(state.instances.values().all(|i| &*i.contract != "web.shop" && &*i.contract != "platform.queue"));
}

#[test]
fn a_self_using_contract_is_a_cycle_too() {
    let mut program = policy();
    let queue = program.services.get_mut("platform.queue").unwrap();
    let store = queue.components.iter_mut().find(|c| c.name == "store").unwrap();
    store.source = Source::Uses { contract: "platform.queue".to_string() };
    let state = resolve(&program);
    assert_eq!(status(&state, "web.ada_shop"), Status::Failed);
    assert!(reason(&state, "web.ada_shop").contains("cycle"), "{}", reason(&state, "web.ada_shop"));
    assert_no_instances_of(&state, "web.ada_shop");
    assert_resolved(&state, "web.ada_db");
}

#[test]
fn a_claim_for_a_missing_user_fails_alone() {
    let mut program = policy();
    let bob_shop = program.claims.iter_mut().find(|c| c.name == "bob_shop").unwrap();
    bob_shop.consumer = Consumer::User("nobody@example.com".into());
    let state = resolve(&program);

    assert_eq!(status(&state, "web.bob_shop"), Status::Failed);
    let why = reason(&state, "web.bob_shop");
    assert!(why.contains("nobody@example.com") && why.contains("does not exist"), "{why}");
    assert_no_instances_of(&state, "web.bob_shop");
    // The same user's other claim, and everyone else's, resolve; ada's shop is still shared
    // with nobody else.
    for claim in ["web.ada_db", "web.ada_shop", "web.bob_site"] {
        assert_resolved(&state, claim);
    }
    let shops = state.instances.values().filter(|i| &*i.contract == "web.shop" && &*i.component == "root").count();
    assert_eq!(shops, 1);
}

#[test]
fn a_claim_for_a_missing_team_fails_alone() {
    let mut program = policy();
    let bob_site = program.claims.iter_mut().find(|c| c.name == "bob_site").unwrap();
    bob_site.consumer = Consumer::Team("ghost_team".into());
    let state = resolve(&program);

    assert_eq!(status(&state, "web.bob_site"), Status::Failed);
    let why = reason(&state, "web.bob_site");
    assert!(why.contains("ghost_team") && why.contains("does not exist"), "{why}");
    assert_no_instances_of(&state, "web.bob_site");
    for claim in ["web.ada_db", "web.ada_shop", "web.bob_shop"] {
        assert_resolved(&state, claim);
    }
}

#[test]
fn a_consumer_without_the_consumer_role_below_the_root_fails_with_an_access_error() {
    let mut program = policy();
    // Bob loses the group that grants `consumer on platform`: web.shop (depth 0) is still his to
    // consume, platform.queue (depth 1) is not. `aptc check` would report APT0501.
    program.users.get_mut("bob@example.com").unwrap().groups.clear();
    let state = resolve(&program);

    assert_eq!(status(&state, "web.bob_shop"), Status::Failed);
    let why = reason(&state, "web.bob_shop");
    assert!(why.contains("bob@example.com") && why.contains("`platform`") && why.contains("consume"), "{why}");
    assert_no_instances_of(&state, "web.bob_shop");
    let entered: Vec<(&str, usize)> = state.claims["web.bob_shop"]
        .decisions
        .iter()
        .filter_map(|d| match d {
            Decision::EnterContract { contract, depth } => Some((&**contract, *depth)),
            _ => None,
        })
        .collect();
    assert_eq!(entered, [("web.shop", 0), ("platform.queue", 1)]);
    // Bob's claim that stays in `web`, and ada's claims, resolve.
    for claim in ["web.ada_db", "web.ada_shop", "web.bob_site"] {
        assert_resolved(&state, claim);
    }
}

#[test]
fn a_consumer_without_any_role_fails_at_the_root() {
    let mut program = policy();
    program.users.get_mut("bob@example.com").unwrap().team = None;
    let state = resolve(&program);
    for claim in ["web.bob_shop", "web.bob_site"] {
        assert_eq!(status(&state, claim), Status::Failed);
        let why = reason(&state, claim);
        assert!(why.contains("`web`") && why.contains("consume"), "{claim}: {why}");
        assert_no_instances_of(&state, claim);
    }
    assert_resolved(&state, "web.ada_db");
    assert_resolved(&state, "web.ada_shop");
}

#[test]
fn a_missing_contract_fails_alone() {
    let mut program = policy();
    let ada_db = program.claims.iter_mut().find(|c| c.name == "ada_db").unwrap();
    ada_db.contract = "platform.nothing".into();
    let state = resolve(&program);
    assert_eq!(status(&state, "web.ada_db"), Status::Failed);
    assert!(reason(&state, "web.ada_db").contains("platform.nothing"), "{}", reason(&state, "web.ada_db"));
    for claim in ["web.ada_shop", "web.bob_shop", "web.bob_site"] {
        assert_resolved(&state, claim);
    }
}

fn assert_deterministic(program: &Program, what: &str) {
    let first = serde_json::to_string(&resolve(program)).unwrap();
    for run in 1..5 {
        let again = serde_json::to_string(&resolve(program)).unwrap();
        assert!(again == first, "{what}: run {run} differs from run 0");
    }
}

#[test]
fn resolving_the_same_program_five_times_is_byte_identical() {
    assert_deterministic(&policy(), "inline policy");
    // Failures are deterministic too.
    let mut broken = policy();
    broken.users.get_mut("bob@example.com").unwrap().groups.clear();
    assert_deterministic(&broken, "inline policy without bob's platform right");
}

#[test]
fn every_resolver_case_and_example_resolves_deterministically() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(common::root().join("tests/cases/resolve"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir() || p.extension().is_some_and(|e| e == "apt"))
        .map(|p| p.strip_prefix(common::root()).unwrap().to_path_buf())
        .collect();
    paths.sort();
    paths.extend(["examples/quickstart", "examples/guestbook", "examples/twitter-analytics"].map(PathBuf::from));
    for path in paths {
        let program = common::lower_path(&path);
        assert_deterministic(&program, &path.display().to_string());
        // Lowering again, and a round trip through the IR's JSON, give the same state.
        let again = common::lower_path(&path);
        assert_eq!(program, again, "{}: lowering is not deterministic", path.display());
        let loaded = Program::from_json(&program.to_json()).unwrap();
        assert_eq!(
            serde_json::to_string(&resolve(&loaded)).unwrap(),
            serde_json::to_string(&resolve(&program)).unwrap(),
            "{}: the IR round trip changes the desired state",
            path.display()
        );
    }
}

#[test]
fn instance_names_do_not_depend_on_other_claims() {
    // Removing a claim leaves the names (and ids) of the instances other claims get unchanged.
    let full = resolve(&policy());
    let mut fewer = policy();
    fewer.claims.retain(|c| c.name != "bob_shop");
    let partial = resolve(&fewer);
    for (key, instance) in &partial.instances {
        let same = &full.instances[key];
        assert_eq!((&instance.name, &instance.id), (&same.name, &same.id), "{key}");
        assert!(instance.name.len() <= 63, "{}", instance.name);
    }
}

/// The IR read from an `.aptir` file can nest as deep as its writer likes (the parser bounds
/// what `.apt` files nest, not what a hand-edited IR holds): a million levels are an error from
/// the loader, never a stack overflow in it or in the resolver.
#[test]
fn a_million_levels_of_ir_are_refused_not_a_crash() {
    let program = common::lower_path(&common::root().join("examples/quickstart"));
    let text = program.to_json();
    let depth = 1_000_000;
    // A label's default, `{"str": "dev"}`, becomes a list of a list of … of it.
    let deep = format!("{}{{\"str\": \"x\"}}{}", "{\"list\": [".repeat(depth), "]}".repeat(depth));
    let at = text.find("\"str\": \"dev\"").expect("a label value to replace");
    let (open, close) = (text[..at].rfind('{').unwrap(), at + text[at..].find('}').unwrap() + 1);
    let hostile = format!("{}{deep}{}", &text[..open], &text[close..]);
    let error = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || Program::from_json(&hostile).map(|_| ()).unwrap_err().to_string())
        .unwrap()
        .join()
        .expect("the loader does not overflow its stack");
    assert!(error.contains("recursion limit exceeded"), "{error}");
}
