//! Incremental resolution (issue #11): after any edit of one claim, `resolve::Incremental` holds
//! the state a full resolution of the edited program gives, byte for byte, having resolved only
//! the edited claim, judged again only the claims after it whose merge may read what changed, and
//! rebuilt only the instances whose merging claims changed.

#[path = "../../benches/synth.rs"]
mod synth;

use std::collections::{BTreeMap, BTreeSet};

use aptc_compiler::host::Analysis;
use aptc_core::ir::{Claim, Program};
use aptc_core::resolve::{Chains, DeployedNames, DesiredState, Incremental, Instance, Options, Status, resolve_with};
use proptest::prelude::*;

/// A policy with shared stage instances, conflicts and rejections, in 12 namespaces.
fn program() -> Program {
    let config = synth::SynthConfig {
        namespaces: 12,
        services_per_namespace: 6,
        contracts_per_namespace: 6,
        rules_per_namespace: 4,
        claims_per_namespace: 0,
        total_claims: Some(240),
        clusters: 4,
        users: 60,
        seed: 5,
    };
    lower(synth::generate(&config).into_iter().map(|file| (file.path, file.text)))
}

/// A policy of chained shared instances: contracts `a0`..`a5` are one shared instance each, whose
/// values are the claim's `replicas`, and `p0`..`p4` use two neighbours (`p1` uses `a1` and `a2`),
/// so a claim of `p1` that merges fixes `a2` for the claims after it. Its 24 claims ask for one or
/// two replicas: which claims merge depends on which ones merged before, so an edit's flips travel
/// along the chain (the transitive step), far more often than in [`program`].
fn chain() -> Program {
    let system = r#"namespace system
user "u@example.com" { groups ["admins"] }
cluster local {
    context "kind-kind"
    namespace "chain"
}
rule everywhere { place on local }
grant domain_admin when "admins" in user.groups
"#;
    let mut text = String::from("namespace chain\nlabel replicas: int = 1\n");
    for i in 0..6 {
        text += &format!(
            "service s{i} {{\n    component store chart \"bitnami/redis\" {{\n        repo \"https://charts.example.com/bitnami\"\n        version \"1.0.0\"\n        values {{ replicas = labels.replicas }}\n    }}\n}}\ncontract a{i} {{\n    context main {{\n        use s{i}\n    }}\n}}\n"
        );
    }
    for i in 0..5 {
        text += &format!(
            "service q{i} {{\n    component left uses a{i}\n    component right uses a{}\n}}\ncontract p{i} {{\n    context main {{\n        use q{i}\n    }}\n}}\n",
            i + 1
        );
    }
    let mut x = 7u32;
    for c in 0..24 {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let contract =
            if (x >> 16).is_multiple_of(2) { format!("a{}", (x >> 8) % 6) } else { format!("p{}", (x >> 8) % 5) };
        let replicas = 1 + (x >> 20) % 2;
        text += &format!(
            "claim k{c:02} {{\n    user \"u@example.com\"\n    contract {contract}\n    labels {{ replicas = {replicas} }}\n}}\n"
        );
    }
    lower([("system.apt".to_string(), system.to_string()), ("chain/policy.apt".to_string(), text)])
}

fn lower(files: impl IntoIterator<Item = (String, String)>) -> Program {
    let mut analysis = Analysis::of_texts(files);
    match analysis.lower() {
        Ok(program) => program,
        Err(errors) => panic!("{}", analysis.render(&errors, false)),
    }
}

fn state(program: &Program, keep_chains: bool) -> DesiredState {
    let chains = if keep_chains { Chains::All } else { Chains::None };
    resolve_with(program, &Options { deployed: &DeployedNames::new(), chains })
}

/// The plan format's bytes, then the decision chains, which the plan format leaves out.
fn text(state: &DesiredState) -> String {
    serde_json::to_string(state).unwrap()
        + &state.claims.values().map(|c| serde_json::to_string(&c.decisions).unwrap()).collect::<String>()
}

/// Whether `got` is `want`; if not, where they part, with some context (the texts are long).
fn differs(got: &str, want: &str) -> Option<String> {
    let at = got.bytes().zip(want.bytes()).position(|(a, b)| a != b).unwrap_or(got.len().min(want.len()));
    if got.len() == want.len() && at == got.len() {
        return None;
    }
    let window = |text: &str| text.get(at.saturating_sub(300)..(at + 200).min(text.len())).unwrap_or("").to_string();
    Some(format!("at byte {at}:\n got: …{}…\nwant: …{}…", window(got), window(want)))
}

fn order(claim: &Claim) -> (String, String) {
    (claim.namespace.to_string(), claim.name.clone())
}

/// A claim's instances when it resolves on its own (none if it does not), each with its cluster,
/// Kubernetes namespace and name: what its merge touches, computed through the public API only.
fn alone(program: &Program, claim: &Claim) -> Instances {
    let alone = Program { claims: vec![claim.clone()], ..program.clone() };
    let state = resolve_with(&alone, &Options { deployed: &DeployedNames::new(), chains: Chains::None });
    if state.claims.values().all(|c| c.status == Status::Resolved) {
        state.instances.into_iter().map(|(key, i)| (key, named(&i))).collect()
    } else {
        Instances::new()
    }
}

/// Instance keys with their cluster, Kubernetes namespace and name.
type Instances = BTreeMap<String, Name>;
type Name = (String, String, String);

fn named(instance: &Instance) -> Name {
    (instance.cluster.to_string(), instance.k8s_namespace.to_string(), instance.name.clone())
}

type Order = (String, String);

/// The work an edit of claim `at` must do, from the full resolutions before (`was`) and after
/// (`is`) it and each claim's instances alone (`instances`, after the edit; `old`: the edited
/// claim's before): the claims judged again, by id in claim order, and the instances rebuilt.
///
/// Claims before `at` read nothing of it. An instance's fixer (its first claim) is what a claim
/// merging after it compares with, and what holds its name: where the fixer changed (or is the
/// edited claim, merging different values), every claim after the earlier of the two fixers that
/// stages the instance, or another of its name, is judged again. Rebuilt: the instances the edited
/// claim merged or merges, and those of every claim whose outcome flipped.
fn expected_work(
    at: &Order,
    old: &Instances,
    instances: &BTreeMap<Order, Instances>,
    was: &DesiredState,
    is: &DesiredState,
) -> (Vec<String>, BTreeSet<String>) {
    let id = format!("{}.{}", at.0, at.1);
    // Every claim's place: those of the program after the edit, and the edited one.
    let places: BTreeMap<String, &Order> =
        instances.keys().chain([at]).map(|order| (format!("{}.{}", order.0, order.1), order)).collect();
    let order_of = |claim: &str| places[claim].clone();
    let fixer = |state: &DesiredState, key: &str| state.instances.get(key).map(|i| i.claims[0].claim.clone());
    let mut judged: BTreeSet<Order> = BTreeSet::new();
    if is.claims.contains_key(&id) {
        judged.insert(at.clone());
    }
    let keys: BTreeSet<&String> = was.instances.keys().chain(is.instances.keys()).collect();
    for key in keys {
        let (before, after) = (fixer(was, key), fixer(is, key));
        let alike = match (was.instances.get(key), is.instances.get(key)) {
            (Some(w), Some(i)) => w.values == i.values && w.discovery == i.discovery,
            _ => false,
        };
        if before == after && (before.as_deref() != Some(&id) || alike) {
            continue;
        }
        let from = [before, after].into_iter().flatten().map(|claim| order_of(&claim)).min().expect("a fixer");
        let name = named(was.instances.get(key).or_else(|| is.instances.get(key)).expect("an instance"));
        for (order, theirs) in instances {
            if *order > from && theirs.values().any(|n| *n == name) {
                judged.insert(order.clone());
            }
        }
    }
    let resolved =
        |state: &DesiredState, claim: &str| state.claims.get(claim).is_some_and(|c| c.status == Status::Resolved);
    let mut rebuilt: BTreeSet<String> = BTreeSet::new();
    if resolved(was, &id) {
        rebuilt.extend(old.keys().cloned());
    }
    for (order, theirs) in instances {
        let claim = format!("{}.{}", order.0, order.1);
        if claim == id && resolved(is, &id) || claim != id && resolved(was, &claim) != resolved(is, &claim) {
            rebuilt.extend(theirs.keys().cloned());
        }
    }
    (judged.into_iter().map(|(ns, name)| format!("{ns}.{name}")).collect(), rebuilt)
}

/// One edit: (kind, claim, other claim).
type Edit = (u8, usize, usize);

fn run_edits(mut program: Program, edits: &[Edit], keep_chains: bool) {
    program.claims.sort_by_key(order);
    let mut instances: BTreeMap<Order, Instances> =
        program.claims.iter().map(|claim| (order(claim), alone(&program, claim))).collect();
    let mut incremental = Incremental::new(program.clone(), DeployedNames::new(), keep_chains);
    let mut was = state(&program, keep_chains);
    if let Some(difference) = differs(&text(incremental.state()), &text(&was)) {
        panic!("the first resolution differs from a full one {difference}");
    }
    for (step, &(kind, a, b)) in edits.iter().enumerate() {
        let n = program.claims.len();
        let (a, b) = (program.claims[a % n].clone(), program.claims[b % n].clone());
        // The edited claim as it becomes (None: removed).
        let edited: (String, String, Option<Claim>) = match kind % 5 {
            0 => (a.namespace.to_string(), a.name.clone(), Some(Claim { labels: b.labels.clone(), ..a.clone() })),
            1 => (a.namespace.to_string(), a.name.clone(), Some(Claim { contract: b.contract.clone(), ..a.clone() })),
            2 => (a.namespace.to_string(), a.name.clone(), Some(Claim { consumer: b.consumer.clone(), ..a.clone() })),
            3 => (a.namespace.to_string(), a.name.clone(), None),
            _ => {
                let name = format!("added{step}");
                (b.namespace.to_string(), name.clone(), Some(Claim { name, labels: a.labels.clone(), ..b.clone() }))
            }
        };
        let (namespace, name, claim) = edited;
        let at = (namespace.clone(), name.clone());
        let old = instances.remove(&at).unwrap_or_default();
        program.claims.retain(|c| order(c) != at);
        let update = match claim {
            Some(claim) => {
                instances.insert(at.clone(), alone(&program, &claim));
                program.claims.push(claim.clone());
                program.claims.sort_by_key(order);
                incremental.set_claim(claim)
            }
            None => incremental.remove_claim(&namespace, &name),
        };
        // Same bytes as resolving the edited program from scratch...
        let is = state(&program, keep_chains);
        if let Some(difference) = differs(&text(incremental.state()), &text(&is)) {
            panic!("step {step}: edit {kind} of {namespace}.{name} differs from a full resolution {difference}");
        }
        // ...having resolved only the edited claim, judged only the claims whose merge may read
        // what changed, and rebuilt only the instances whose merging claims changed.
        let present = program.claims.iter().any(|c| order(c) == at);
        assert_eq!(update.resolved, usize::from(present), "step {step}");
        let (judged, rebuilt) = expected_work(&at, &old, &instances, &was, &is);
        assert_eq!(update.merged, judged, "step {step}: claims judged again");
        assert_eq!(update.instances, rebuilt, "step {step}: instances rebuilt");
        was = is;
    }
}

/// A policy where claims after the first chunk (256 claims) conflict with an instance the first
/// chunk fixed, at a key before a shared redis that the `deep` claims reach twice with different
/// values (directly, and through `sessions`, which sets `memory`).
fn past_the_cut() -> Program {
    let system = r#"
namespace system
label memory: string = "256mb"
label owner: string = "none"
label deep: bool = false
team app_team
team infra_team
user "ada@example.com" {
    team app_team
}
cluster local {
    namespace "apps"
}
rule everything_on_local {
    place on local
}
"#;
    let infra = r#"
namespace infra owned_by infra_team
import system
service redis {
    component redis chart "bitnami/redis" {
        version "18.0.0"
        values { maxmemory = labels.memory }
    }
}
contract redis {
    context shared {
        use redis
    }
}
service sessions {
    component store uses redis
}
contract sessions {
    set labels.memory = "4gb"
    context shared {
        use sessions
    }
}
"#;
    let mut app = String::from(
        r#"
namespace app owned_by app_team
import system
service web {
    component conf chart "bitnami/nginx" {
        version "15.0.0"
        values { owner = labels.owner }
    }
    component cache uses infra.redis
    component sessions uses infra.sessions {
        when labels.deep
    }
}
contract web {
    context shared {
        use web
    }
}
"#,
    );
    let claim = |name: &str, labels: &str| {
        format!("claim {name} {{\n    user \"ada@example.com\"\n    contract web\n    labels {{ {labels} }}\n}}\n")
    };
    for i in 0..256 {
        app += &claim(&format!("c{i:03}"), r#"owner = "a""#);
    }
    app += &claim("z1", r#"owner = "b", deep = true"#);
    app += &claim("z2", r#"owner = "b""#);
    app += &claim("z3", r#"owner = "a", deep = true"#);
    lower(
        [("system.apt", system), ("infra.apt", infra), ("app.apt", app.as_str())]
            .map(|(p, t)| (p.to_string(), t.to_string())),
    )
}

/// A claim that conflicts with an instance fixed before its chunk builds no instance past that
/// key (`ClaimRun::cut` in the resolver), yet fails as it would have: on reaching an instance past
/// the conflict twice with different values, an error of its own, which comes before the
/// conflict (`z1`, as `z3` without a conflict); else on the conflict (`z2`). The incremental
/// resolver, which builds every instance of every claim, gives the same state byte for byte.
#[test]
fn instances_past_a_claims_conflict_are_checked_but_not_built() {
    let program = past_the_cut();
    let twice = "the claim reaches instance `local/apps/infra.redis/shared/redis` twice with different values: \
                 `maxmemory`: \"256mb\" vs \"4gb\" (in contract `infra.redis`, depth 2)";
    for keep_chains in [false, true] {
        let full = state(&program, keep_chains);
        let reason = |claim: &str| full.claims[claim].reason.as_deref().unwrap_or_default().to_string();
        assert_eq!(full.claims["app.c255"].status, Status::Resolved);
        assert_eq!(reason("app.z1"), twice);
        assert_eq!(reason("app.z3"), twice);
        assert!(
            reason("app.z2")
                .starts_with("conflict on shared instance `local/apps/app.web/shared/conf`: claim `app.c000`"),
            "{}",
            reason("app.z2")
        );
        let incremental = Incremental::new(program.clone(), DeployedNames::new(), keep_chains);
        if let Some(diff) = differs(&text(&full), &text(incremental.state())) {
            panic!("the full resolution differs from the incremental one {diff}");
        }
    }
}

#[test]
fn the_policy_has_shared_instances_conflicts_and_failures() {
    // So the edits below exercise the merge: claims sharing instances, some of them conflicting.
    let program = program();
    let state = resolve_with(&program, &Options { deployed: &DeployedNames::new(), chains: Chains::None });
    assert!(state.instances.values().filter(|i| i.claims.len() > 1).count() > 10);
    assert!(state.claims.values().filter(|c| c.status == Status::Failed).count() > 5);
    assert!(state.claims.values().filter(|c| c.status == Status::Resolved).count() > 100);
}

#[test]
fn the_chain_flips_claims_that_share_nothing_with_the_edited_one() {
    // So the edits of the chain exercise the transitive step: relabelling one claim changes the
    // outcome of a claim that stages none of its instances, through claims that flipped between.
    let program = chain();
    let was = state(&program, false);
    let mut transitive = 0;
    for (i, edited) in program.claims.iter().enumerate() {
        for other in &program.claims {
            let mut claims = program.claims.clone();
            claims[i] = Claim { labels: other.labels.clone(), ..edited.clone() };
            let is = state(&Program { claims, ..program.clone() }, false);
            let mine: BTreeSet<String> = alone(&program, edited).into_keys().collect();
            transitive += program
                .claims
                .iter()
                .filter(|c| alone(&program, c).keys().all(|key| !mine.contains(key)))
                .filter(|c| {
                    let id = format!("{}.{}", c.namespace, c.name);
                    was.claims[&id].status != is.claims[&id].status
                })
                .count();
        }
    }
    assert!(transitive > 10, "{transitive} claims flipped transitively");
}

#[test]
fn a_flip_travels_along_the_chain() {
    // Removing k19, then relabelling k00 as k04: the case proptest found with the transitive step
    // left out.
    run_edits(chain(), &[(3, 19, 0), (0, 0, 4)], false);
}

#[test]
fn every_kind_of_edit_then_the_same_as_a_full_resolution() {
    let edits: Vec<Edit> = (0..20u8).map(|i| (i, 37 * i as usize + 3, 91 * i as usize + 11)).collect();
    run_edits(program(), &edits, false);
}

#[test]
fn decision_chains_are_kept_through_edits() {
    run_edits(program(), &[(0, 5, 17), (1, 40, 3), (3, 8, 0), (4, 12, 99), (2, 60, 7)], true);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn random_edits_give_the_full_resolution(edits in prop::collection::vec((0u8..5, any::<usize>(), any::<usize>()), 1..8)) {
        run_edits(program(), &edits, false);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_edits_of_the_chain_give_the_full_resolution(edits in prop::collection::vec((0u8..5, any::<usize>(), any::<usize>()), 1..10)) {
        run_edits(chain(), &edits, false);
    }
}
