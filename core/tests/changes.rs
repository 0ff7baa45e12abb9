//! The Changing rule as data (docs/language.md §11.3): each line of
//! `tests/cases/changes/matrix.txt` is a user making one kind of change, or a sequence of
//! changes, to one policy, with the verdict `aptc_core::changes::refusals` must give. Each line
//! is its own test, so one wrong verdict does not hide the others.

mod common;

use std::fmt::Write as _;

use aptc_core::changes::{Refusal, refusals};
use aptc_core::ir::Program;
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let text = std::fs::read_to_string(common::root().join("tests/cases/changes/matrix.txt")).unwrap();
    let mut trials = Vec::new();
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#')) {
        let case = parse(line).unwrap_or_else(|e| panic!("matrix.txt:{}: {e}", n + 1));
        let name = format!("line_{:03}_{}", n + 1, line.split_whitespace().collect::<Vec<_>>().join("_"));
        trials.push(Trial::test(name, move || run(&case)));
    }
    assert!(trials.len() >= 50, "the matrix has {} cases", trials.len());
    libtest_mimic::run(&args, trials).exit();
}

/// One change: `op` (add, modify, delete, none) of an object `kind` in namespace `place`.
#[derive(Clone, Debug, PartialEq)]
struct Change {
    who: String,
    op: String,
    kind: String,
    place: String,
}

/// Changes applied one after the other, each with its expected verdict.
type Case = Vec<(Change, bool)>;

fn parse(line: &str) -> Result<Case, String> {
    if let Some(steps) = line.strip_prefix("steps:") {
        let (changes, verdicts) = steps.split_once("=>").ok_or("a steps line needs `=>`")?;
        let changes: Vec<Change> = changes
            .split(',')
            .map(|step| match step.trim().split(':').collect::<Vec<_>>().as_slice() {
                [who, op, kind, place] => Ok(change(who, op, kind, place)),
                _ => Err(format!("`{step}` is not WHO:CHANGE:KIND:WHERE")),
            })
            .collect::<Result<_, _>>()?;
        let verdicts: Vec<bool> = verdicts.split_whitespace().map(verdict).collect::<Result<_, _>>()?;
        if changes.len() != verdicts.len() {
            return Err("one verdict per step".into());
        }
        return Ok(changes.into_iter().zip(verdicts).collect());
    }
    match line.split_whitespace().collect::<Vec<_>>().as_slice() {
        [who, op, kind, place, expected] => Ok(vec![(change(who, op, kind, place), verdict(expected)?)]),
        _ => Err(format!("`{line}` does not have five columns")),
    }
}

fn change(who: &str, op: &str, kind: &str, place: &str) -> Change {
    Change { who: who.into(), op: op.into(), kind: kind.into(), place: place.into() }
}

fn verdict(text: &str) -> Result<bool, String> {
    match text {
        "allowed" => Ok(true),
        "refused" => Ok(false),
        other => Err(format!("`{other}` is neither allowed nor refused")),
    }
}

/// Applies each step to the policy the last allowed step left, checking its verdict.
fn run(case: &Case) -> Result<(), Failed> {
    let mut applied: Vec<Change> = Vec::new();
    for (step, (change, allowed)) in case.iter().enumerate() {
        let old = policy(&applied);
        let mut next = applied.clone();
        if change.op != "none" {
            next.push(change.clone());
        }
        let new = policy(&next);
        let refused: Vec<Refusal> = refusals(&old, &new, &format!("{}@example.com", change.who));
        if refused.is_empty() != *allowed {
            let shown: Vec<String> = refused.iter().map(ToString::to_string).collect();
            return Err(format!(
                "step {}: {change:?} should be {}, refusals: {shown:?}",
                step + 1,
                if *allowed { "allowed" } else { "refused" }
            )
            .into());
        }
        if change.op != "none" && !refused.is_empty() {
            // A refused change is neither applied nor recorded.
            continue;
        }
        if change.op != "none" && aptc_core::changes::changes(&old, &new).is_empty() {
            return Err(format!("step {}: {change:?} changes nothing: the test policy lacks it", step + 1).into());
        }
        applied = next;
    }
    Ok(())
}

/// Whether `changes` holds `op` of `kind` in `place`.
fn has(changes: &[Change], op: &str, kind: &str, place: &str) -> bool {
    changes.iter().any(|c| c.op == op && c.kind == kind && c.place == place)
}

/// The test policy with `changes` applied.
fn policy(changes: &[Change]) -> Program {
    let mut files = vec![("system.apt".to_string(), system(changes))];
    for (namespace, owner) in [("web", "web_team"), ("platform", "platform_team")] {
        files.push((format!("{namespace}.apt"), team_namespace(namespace, owner, changes)));
    }
    if has(changes, "add", "owner", "newspace") {
        files.push((
            "newspace.apt".into(),
            "namespace newspace owned_by web_team\n\nlabel nothing: string = \"n\"\n".into(),
        ));
    }
    let files: Vec<(&str, &str)> = files.iter().map(|(n, t)| (n.as_str(), t.as_str())).collect();
    common::compile(&files)
}

fn system(changes: &[Change]) -> String {
    let on = |op: &str, kind: &str| has(changes, op, kind, "system");
    let mut text = String::from("namespace system\n\nteam web_team\nteam platform_team\n");
    if on("add", "team") {
        text.push_str("team extra_team\n");
    }
    text.push_str("\nuser \"root@example.com\" {\n    groups [\"admins\"]\n}\n");
    let wendy_groups = if on("modify", "user") { "[\"writers\"]" } else { "[]" };
    let _ = write!(text, "user \"wendy@example.com\" {{\n    team web_team\n    groups {wendy_groups}\n}}\n");
    text.push_str("user \"carl@example.com\" {}\nuser \"pat@example.com\" {\n    team platform_team\n}\n");
    if let Some(adder) = changes.iter().find(|c| c.op == "add" && c.kind == "user") {
        // A non-user adds himself to the admins; anyone else adds a user with no roles.
        text.push_str(if adder.who == "mallory" {
            "user \"mallory@example.com\" {\n    groups [\"admins\"]\n}\n"
        } else {
            "user \"newbie@example.com\" {}\n"
        });
    }
    let local =
        if on("modify", "cluster") { "cluster local {\n    namespace \"apps\"\n}\n" } else { "cluster local {}\n" };
    let _ = write!(text, "\n{local}");
    if !on("delete", "cluster") {
        text.push_str("cluster spare_cluster {}\n");
    }
    if on("add", "cluster") {
        text.push_str("cluster extra_cluster {}\n");
    }
    text.push_str("\nrule everything_on_local {\n    place on local\n}\n");
    if on("add", "rule") {
        text.push_str("rule extra_global {\n    place on local\n}\n");
    }
    text.push_str("\ngrant domain_admin when \"admins\" in user.groups\n");
    let carl = if on("modify", "grant") { "domain_admin" } else { "consumer" };
    let _ = writeln!(text, "grant {carl} when user.name == \"carl@example.com\"");
    if !on("delete", "grant") {
        text.push_str("grant consumer on platform when user.team == \"web_team\"\n");
    }
    if on("add", "grant") {
        text.push_str("grant namespace_admin on platform when user.name == \"wendy@example.com\"\n");
    }
    text
}

fn team_namespace(namespace: &str, owner: &str, changes: &[Change]) -> String {
    let on = |op: &str, kind: &str| has(changes, op, kind, namespace);
    let owner =
        if on("modify", "owner") { if owner == "web_team" { "platform_team" } else { "web_team" } } else { owner };
    let mut text = format!("namespace {namespace} owned_by {owner}\n\n");
    let label = if on("modify", "label") { "\"b\"" } else { "\"a\"" };
    if !on("delete", "label") {
        let _ = writeln!(text, "label spare: string = {label}");
    }
    text.push_str("label key: string = \"k\"\n");
    if on("add", "label") {
        text.push_str("label extra: string = \"x\"\n");
    }
    text.push_str("\nservice svc {\n    component app chart \"oci://charts.example.com/app\"\n}\n");
    let version =
        if on("modify", "service") { "oci://charts.example.com/app2" } else { "oci://charts.example.com/app" };
    if !on("delete", "service") {
        let _ = write!(text, "service spare_svc {{\n    component app chart \"{version}\"\n}}\n");
    }
    if on("add", "service") {
        text.push_str("service extra_svc {\n    component app chart \"oci://charts.example.com/extra\"\n}\n");
    }
    text.push_str("\ncontract main {\n    context all {\n        allocate per labels.key\n        use svc\n    }\n}\n");
    let context = if on("modify", "contract") { "every" } else { "all" };
    if !on("delete", "contract") {
        let _ = write!(text, "contract spare_contract {{\n    context {context} {{\n        use svc\n    }}\n}}\n");
    }
    if on("add", "contract") {
        text.push_str("contract extra_contract {\n    context all {\n        use svc\n    }\n}\n");
    }
    let when = if on("modify", "rule") { "\"w\"" } else { "\"z\"" };
    if !on("delete", "rule") {
        let _ = write!(text, "\nrule spare_rule when labels.key == {when} {{\n    set labels.key = \"y\"\n}}\n");
    }
    if on("add", "rule") {
        text.push_str("rule extra_rule when labels.key == \"v\" {\n    set labels.key = \"u\"\n}\n");
    }
    let claim = |name: &str, key: &str| {
        format!(
            "claim {name} {{\n    user \"root@example.com\"\n    contract main\n    labels {{ key = \"{key}\" }}\n}}\n"
        )
    };
    text.push('\n');
    if !on("delete", "claim") {
        text.push_str(&claim("spare_claim", if on("modify", "claim") { "r" } else { "q" }));
    }
    if on("add", "claim") {
        text.push_str(&claim("extra_claim", "e"));
    }
    text
}
