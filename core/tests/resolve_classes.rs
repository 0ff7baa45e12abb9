//! Claims alike in all their resolution reads resolve once (`resolve_with` without decision
//! chains, issue #11): the plan is the same as when every claim resolves on its own, which a
//! resolution keeping every chain does. On random small policies with shared instances,
//! conflicts, allocation per user, label changes and removals, rules that reject with messages
//! naming the claim or the user, access refused to some consumers, values reading the consumer and
//! the claim, and labels nothing reads, some written over and over to more than one chunk of
//! claims (so that claims conflict on instances fixed before); and on Aptomi's engine shape with
//! few users.

#[path = "../../benches/synth.rs"]
mod synth;

use aptc_compiler::host::Analysis;
use aptc_core::ir::Program;
use aptc_core::resolve::{Chains, DeployedNames, Options, Status, resolve_with};
use proptest::prelude::*;

fn lower(files: impl IntoIterator<Item = (String, String)>) -> Program {
    let mut analysis = Analysis::of_texts(files);
    match analysis.lower() {
        Ok(program) => program,
        Err(errors) => panic!("{}", analysis.render(&errors, false)),
    }
}

/// The plan JSON of `program`, claims alike resolved once (`Chains::None`) and each on its own.
fn both(program: &Program) -> (String, String) {
    let deployed = DeployedNames::new();
    let once = resolve_with(program, &Options { deployed: &deployed, chains: Chains::None });
    let each = resolve_with(program, &Options { deployed: &deployed, chains: Chains::All });
    (serde_json::to_string_pretty(&once).unwrap(), serde_json::to_string_pretty(&each).unwrap())
}

/// A condition over the labels and the consumer, as `.apt`.
fn condition() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec!["p", "q"]).prop_map(|c| format!("labels.a == \"{c}\"")),
        (0i64..2).prop_map(|k| format!("labels.n >= {k}")),
        Just("labels.e == \"x\"".to_string()),
        Just("user.team == \"t1\"".to_string()),
        Just("user.name == \"u1@x\"".to_string()),
        Just("claim.name == \"c3\"".to_string()),
        Just("true".to_string()),
    ]
}

#[derive(Debug, Clone)]
struct Case {
    context_when: String,
    allocate: &'static str,
    /// A value of the component besides `a`, reading the consumer or the claim (or nothing).
    value: &'static str,
    relabel: Option<(String, &'static str)>,
    reject: Option<(String, &'static str)>,
    /// Consumers of team `t2` may not consume in `system` (a grant the checker would refuse
    /// their claims for, so added to the lowered program).
    grant: bool,
    /// The used contract sets a label, so uses at depth 1 have labels of their own.
    deep_set: bool,
    /// (consumer, a, n, e, quiet) per claim.
    claims: Vec<(usize, usize, usize, usize, usize)>,
    /// The claims written first over and over for contract `app2`, to more than 256
    /// (`resolve_with`'s chunk of claims resolved in parallel): they fix the instances of `store`,
    /// which the claims of `app` then conflict on or agree with in later chunks (a class's first
    /// claim that conflicts on an instance fixed before keeps the class's template).
    repeat: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        condition(),
        prop::sample::select(vec![
            "",
            "allocate per user.name",
            "allocate per labels.a",
            "allocate per claim.id",
            "allocate per user.team",
        ]),
        prop::sample::select(vec![
            "",
            "who = user.name",
            "claim = claim.name",
            "dept = user.labels.d",
            "quiet = labels.n",
        ]),
        prop::option::of((
            condition(),
            prop::sample::select(vec![
                "set labels.a = \"p\"",
                "remove labels.a",
                "set labels.n = 1",
                "remove labels.n",
            ]),
        )),
        prop::option::of((
            condition(),
            prop::sample::select(vec!["no", "no ${claim.id}", "no ${user.name} ${labels.a}"]),
        )),
        prop::bool::ANY,
        prop::bool::ANY,
        prop::collection::vec((0usize..5, 0usize..3, 0usize..3, 0usize..2, 0usize..3), 1..40),
        prop::bool::ANY,
    )
        .prop_map(|(context_when, allocate, value, relabel, reject, grant, deep_set, claims, repeat)| Case {
            context_when,
            allocate,
            value,
            relabel,
            reject,
            grant,
            deep_set,
            claims,
            repeat,
        })
}

/// The lowered policy of `case`.
fn program(case: &Case) -> Program {
    let mut program = lower([("p.apt".to_string(), policy(case))]);
    if case.grant {
        let grant = "namespace system\n\nteam t1\n\ngrant consumer on system when user.team == \"t1\"\n";
        program.grants = lower([("g.apt".to_string(), grant.to_string())]).grants;
    }
    program
}

fn policy(case: &Case) -> String {
    let relabel = case
        .relabel
        .as_ref()
        .map(|(when, action)| format!("rule relabel weight 1 when {when} {{\n    {action}\n}}\n"))
        .unwrap_or_default();
    let reject = case
        .reject
        .as_ref()
        .map(|(when, message)| format!("rule no weight 5 when {when} {{\n    reject \"{message}\"\n}}\n"))
        .unwrap_or_default();
    let deep_set = if case.deep_set { "        set labels.e = \"y\"\n" } else { "" };
    let mut claims = String::new();
    let before = if case.repeat { 260 } else { 0 };
    let written = case.claims.iter().cycle().take(before).enumerate().map(|(i, c)| ("a", "app2", i, c));
    let own = case.claims.iter().enumerate().map(|(i, c)| ("c", "app", i, c));
    for (name, contract, i, &(consumer, a, n, e, quiet)) in written.chain(own) {
        let consumer = ["user \"u1@x\"", "user \"u2@x\"", "user \"u3@x\"", "team t1", "team t2"][consumer];
        let mut labels = Vec::new();
        if a < 2 {
            labels.push(format!("a = \"{}\"", ["p", "q"][a]));
        }
        if n < 2 {
            labels.push(format!("n = {n}"));
        }
        labels.push(format!("e = \"{}\"", ["x", "y"][e]));
        if quiet < 2 {
            labels.push(format!("quiet = \"{}\"", ["one", "two"][quiet]));
        }
        claims.push_str(&format!(
            "claim {name}{i} {{\n    {consumer}\n    contract {contract}\n    labels {{ {} }}\n}}\n",
            labels.join(", ")
        ));
    }
    format!(
        r#"namespace system

label a: string = "q"
label n: int
label e: "x" | "y" | "z" = "z"
label d: string = "none"
label quiet: string = "hush"
team t1 {{
    labels {{ d = "ops" }}
}}
team t2
user "u1@x" {{
    team t1
}}
user "u2@x" {{
    team t2
    labels {{ d = "dev", quiet = "shh" }}
}}
user "u3@x" {{
    team t1
    labels {{ d = "ml" }}
}}
cluster east {{}}
cluster west {{}}
service db {{
    component main chart "postgres" {{
        version "1.0"
        values {{ e = labels.e, a = default(labels.a, "none") }}
    }}
}}
contract store {{
    context only {{
{deep_set}        use db
    }}
}}
service app {{
    component data uses store
    component web chart "nginx" {{
        version "1.0"
        after data
        values {{ a = default(labels.a, "none"){value} }}
    }}
}}
contract app {{
    context first when {when} {{
        {allocate}
        use app
    }}
    context other when labels.e == "x" {{
        use app
    }}
}}
contract app2 {{
    context any {{
        use app
    }}
}}
rule east weight 10 when labels.e == "x" {{
    place on east
}}
rule west weight 20 when labels.e != "x" {{
    place on west
}}
{relabel}{reject}
{claims}"#,
        when = case.context_when,
        allocate = case.allocate,
        value = if case.value.is_empty() { String::new() } else { format!(", {}", case.value) },
    )
}

#[test]
fn the_generated_policies_share_conflict_and_refuse() {
    // Every claim by one user with the same labels but for `quiet`: one class, one instance shared.
    let case = Case {
        context_when: "true".into(),
        allocate: "allocate per user.name",
        value: "claim = claim.name",
        relabel: Some(("labels.n >= 1".into(), "remove labels.a")),
        reject: Some(("user.name == \"u3@x\"".into(), "no ${user.name} ${labels.a}")),
        grant: true,
        deep_set: true,
        claims: vec![(0, 0, 0, 0, 0), (0, 0, 0, 0, 1), (1, 0, 0, 0, 0), (2, 1, 1, 1, 0), (0, 1, 0, 0, 2)],
        repeat: false,
    };
    let program = program(&case);
    let (once, each) = both(&program);
    assert_eq!(once, each);
    let state = resolve_with(&program, &Options { deployed: &DeployedNames::new(), chains: Chains::None });
    let status = |id: &str| state.claims[id].status;
    // c1 differs from c0 only in a label nothing reads, yet conflicts on `claim.name`.
    assert_eq!(status("system.c0"), Status::Resolved);
    assert_eq!(status("system.c1"), Status::Failed);
    // u2 (team t2) may not consume; u3 is rejected by a message naming it.
    assert!(state.claims["system.c2"].reason.as_deref().unwrap_or("").contains("u2@x"));
    assert_eq!(status("system.c3"), Status::Rejected);
    assert!(state.claims["system.c3"].reason.as_deref().unwrap_or("").contains("u3@x"));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn claims_resolved_once_give_the_plan_of_claims_resolved_each(case in case()) {
        let (once, each) = both(&program(&case));
        prop_assert!(once == each, "{}", policy(&case));
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4, ..ProptestConfig::default() })]

    /// Aptomi's engine shape: `prod` shared, `staging` per team, `dev` per user.
    #[test]
    fn the_engine_shape_resolved_once_is_resolved_each(claims in 50usize..400, users in 2usize..12, seed in any::<u64>()) {
        let program = lower(synth::engine(claims, users, seed).into_iter().map(|file| (file.path, file.text)));
        let (once, each) = both(&program);
        prop_assert!(once == each);
    }
}
