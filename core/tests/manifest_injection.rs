//! Interpolated values never change the structure of a manifest (docs/language.md §5.2, issue
//! #10 point 1): arbitrary strings, through every interpolation of the examples' templates and of
//! templates with flow maps, lists, plain scalars, block scalars and keys, render to exactly the
//! template's documents and keys with the value in place.

use std::path::Path;

use aptc_core::eval::{Env, Subject};
use aptc_core::ir::{Expr, Program, Template, TemplatePart, Value};
use proptest::prelude::*;
use serde_json::Value as Json;

/// Templates beyond the examples': every kind of position a value may take.
const POSITIONS: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: ${a}
  labels: {team: ${a}, "q": "${a}"}
data:
  plain: ${a}
  inside: prefix-${a}-suffix
  single: '${a}'
  "${a}-key": 1
  list: [${a}, x]
  items:
    - ${a}
    - "${a}"
  script: |
    echo ${a}
    done
---
apiVersion: v1
kind: Secret
metadata:
  name: s
stringData:
  v: "${a}"
"#;

/// The templates checked: the examples' manifests and [`POSITIONS`].
fn templates() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart/k8s");
    let mut out: Vec<String> =
        std::fs::read_dir(root).unwrap().map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap()).collect();
    out.push(POSITIONS.to_string());
    out
}

/// The template's text pieces, with every `${…}` a hole.
fn pieces(text: &str) -> Vec<Option<&str>> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push(Some(&rest[..start]));
        let end = rest[start..].find('}').unwrap() + start;
        out.push(None);
        rest = &rest[end + 1..];
    }
    out.push(Some(rest));
    out
}

/// The expected documents: the template parsed with each hole a distinct token, then the tokens
/// replaced by `value` (a whole unquoted scalar takes the value, anything else contains it).
fn expected(text: &str, value: &str) -> Vec<Json> {
    let token = "zqxjholez";
    let plain: String = pieces(text).iter().map(|p| p.unwrap_or(token)).collect();
    fn put(node: &Json, token: &str, value: &str) -> Json {
        match node {
            Json::String(s) => Json::String(s.replace(token, value)),
            Json::Array(items) => Json::Array(items.iter().map(|i| put(i, token, value)).collect()),
            Json::Object(map) => {
                Json::Object(map.iter().map(|(k, v)| (k.replace(token, value), put(v, token, value))).collect())
            }
            other => other.clone(),
        }
    }
    aptc_core::manifest::documents(&plain)
        .into_iter()
        .filter_map(|d| serde_saphyr::from_str::<Option<Json>>(&d.text).unwrap())
        .map(|d| put(&d, token, value))
        .collect()
}

fn render(text: &str, value: &str) -> String {
    let parts = pieces(text)
        .into_iter()
        .map(|p| match p {
            Some(t) => TemplatePart::Text(t.to_string()),
            None => TemplatePart::Expr(Expr::Const(Value::Str(value.to_string()))),
        })
        .collect();
    let program = Program {
        format: "aptir".into(),
        version: 0,
        compiler: String::new(),
        labels: Default::default(),
        namespaces: Default::default(),
        services: Default::default(),
        contracts: Default::default(),
        rules: Default::default(),
        clusters: Default::default(),
        users: Default::default(),
        teams: Default::default(),
        grants: Vec::new(),
        claims: Vec::new(),
        tests: Vec::new(),
        assertions: Vec::new(),
    };
    let labels = Default::default();
    let user = Subject::default();
    let env = Env {
        program: &program,
        labels: &labels,
        user: &user,
        claim: ("c", "n", "id"),
        placement: None,
        instance: None,
        discovery: None,
        values: None,
        observer: None,
    };
    env.render_manifest(&Template { parts }).unwrap()
}

fn parsed(stream: &str) -> Vec<Json> {
    aptc_core::manifest::documents(stream)
        .into_iter()
        .filter_map(|d| serde_saphyr::from_str::<Option<Json>>(&d.text).unwrap())
        .collect()
}

fn hostile() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("\"".to_string()),
        Just("'".to_string()),
        Just("\n".to_string()),
        Just("\n---\n".to_string()),
        Just("#".to_string()),
        Just("&a".to_string()),
        Just("*a".to_string()),
        Just("!!str".to_string()),
        Just("{".to_string()),
        Just("[".to_string()),
        Just(": ".to_string()),
        Just("\t".to_string()),
        Just("\0".to_string()),
        Just("\u{85}".to_string()),
        Just("\u{2028}".to_string()),
        Just("\u{7f}".to_string()),
        Just("yes".to_string()),
        Just("null".to_string()),
        Just("- ".to_string()),
        Just("x\"\n  evil: \"pwned".to_string()),
        any::<char>().prop_map(String::from),
        "[a-z]{1,4}",
    ];
    prop::collection::vec(piece, 0..8).prop_map(|p| p.concat())
}

#[test]
fn the_issue_payloads_stay_values() {
    for value in [
        "x\"\n  evil: \"pwned",
        "a\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: evil}",
        "yes",
        "null",
        "b, evil: 1}",
        "c]\n- evil",
    ] {
        for text in templates() {
            assert_eq!(parsed(&render(&text, value)), expected(&text, value), "{value:?} in\n{text}");
        }
    }
}

proptest! {
    #[test]
    fn any_string_lands_in_its_node(value in hostile()) {
        for text in templates() {
            let rendered = render(&text, &value);
            prop_assert_eq!(parsed(&rendered), expected(&text, &value), "{}", rendered);
        }
    }
}
