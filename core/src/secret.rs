//! Secret references (docs/language.md §5.9): `secret_env(NAME)`, `secret_file(PATH)` and
//! `secret_k8s(NAME, KEY)` evaluate to a *marker*, `{"$secret": {"env": "NAME"}}`,
//! `{"$secret": {"file": "PATH"}}` or `{"$secret": {"k8s": {"name": "NAME", "key": "KEY"}}}`,
//! which the desired state, plans and stores carry instead of the secret. This module is the pure half:
//! recognising markers, [`redact`]ing them for people, and the textual [`placeholder`] a secret
//! stands as inside a rendered template. Reading secrets (revealing, digests, scrubbing tool
//! output) is I/O and lives in the runtime.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value as Json;

use crate::ir::{SECRET_KEY, Value};

/// What people see instead of a secret.
pub const REDACTED: &str = "***";

/// How a placeholder in a text starts and ends.
const PLACEHOLDER_START: &str = "@@aptc-secret:";
const PLACEHOLDER_END: &str = "@@";

/// A reference to a secret: where its value is read when an instance is applied.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecretRef {
    /// The environment variable of this name, of the process that deploys.
    Env(String),
    /// The file at this path, as written (relative to the policy file's directory).
    File(String),
    /// The key `key` of the Kubernetes Secret `name` in the home namespace (docs/language.md
    /// §8.1: the controller's namespace, or the current context's).
    Kube { name: String, key: String },
}

impl SecretRef {
    /// The marker the resolver puts into the desired state for this reference.
    pub fn marker(&self) -> Value {
        let inner = match self {
            SecretRef::Env(name) | SecretRef::File(name) => Value::Str(name.clone()),
            SecretRef::Kube { name, key } => Value::Map(vec![
                ("name".to_string(), Value::Str(name.clone())),
                ("key".to_string(), Value::Str(key.clone())),
            ]),
        };
        Value::Map(vec![(SECRET_KEY.to_string(), Value::Map(vec![(self.kind().to_string(), inner)]))])
    }

    /// The reference a JSON value is the marker of, if it is one.
    pub fn from_json(value: &Json) -> Option<SecretRef> {
        let outer = value.as_object().filter(|o| o.len() == 1)?;
        let inner = outer.get(SECRET_KEY)?.as_object().filter(|o| o.len() == 1)?;
        let (kind, name) = inner.iter().next()?;
        if kind == "k8s" {
            let fields = name.as_object().filter(|o| o.len() == 2)?;
            let field = |f: &str| fields.get(f).and_then(Json::as_str).map(str::to_string);
            return Some(SecretRef::Kube { name: field("name")?, key: field("key")? });
        }
        SecretRef::new(kind, name.as_str()?)
    }

    /// The reference of a marker's kind (`env`, `file`, `k8s`) and name (for `k8s`,
    /// `NAME/KEY`: neither a Secret's name nor a key holds a `/`).
    pub fn new(kind: &str, name: &str) -> Option<SecretRef> {
        match kind {
            "env" => Some(SecretRef::Env(name.to_string())),
            "file" => Some(SecretRef::File(name.to_string())),
            "k8s" => {
                let (name, key) = name.split_once('/')?;
                Some(SecretRef::Kube { name: name.to_string(), key: key.to_string() })
            }
            _ => None,
        }
    }

    /// `env`, `file` or `k8s`.
    pub fn kind(&self) -> &'static str {
        match self {
            SecretRef::Env(_) => "env",
            SecretRef::File(_) => "file",
            SecretRef::Kube { .. } => "k8s",
        }
    }

    /// The variable's name or the file's path, as written; for a Kubernetes Secret, `NAME/KEY`
    /// (the inverse of [`SecretRef::new`]).
    pub fn name(&self) -> String {
        match self {
            SecretRef::Env(name) | SecretRef::File(name) => name.clone(),
            SecretRef::Kube { name, key } => format!("{name}/{key}"),
        }
    }
}

impl fmt::Display for SecretRef {
    /// As the policy wrote it: `secret_env("NAME")`, `secret_k8s("NAME", "KEY")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Kube { name, key } => write!(f, "secret_k8s({name:?}, {key:?})"),
            other => write!(f, "secret_{}({:?})", other.kind(), other.name()),
        }
    }
}

/// `value` with every marker replaced by what `f` makes of its reference.
pub fn replace<E>(value: &Json, f: &mut impl FnMut(SecretRef) -> Result<Json, E>) -> Result<Json, E> {
    if let Some(secret) = SecretRef::from_json(value) {
        return f(secret);
    }
    Ok(match value {
        Json::Array(items) => Json::Array(items.iter().map(|v| replace(v, f)).collect::<Result<_, _>>()?),
        Json::Object(entries) => {
            Json::Object(entries.iter().map(|(k, v)| Ok((k.clone(), replace(v, f)?))).collect::<Result<_, E>>()?)
        }
        other => other.clone(),
    })
}

/// The values as people may see them: every secret is `***`.
pub fn redact(values: &Json) -> Json {
    replace(values, &mut |_| Ok::<_, std::convert::Infallible>(Json::String(REDACTED.to_string())))
        .unwrap_or_else(|never| match never {})
}

/// The secrets `values` refers to, each once.
pub fn references(values: &Json) -> BTreeSet<SecretRef> {
    let mut found = BTreeSet::new();
    let _ = replace(values, &mut |secret| {
        found.insert(secret);
        Ok::<_, std::convert::Infallible>(Json::Null)
    });
    found
}

/// The text standing for a secret in a textual template (a manifest) until it is revealed:
/// `@@aptc-secret:env:NAME@@` (`%` and `@` in the reference are escaped as `%25`, `%40`).
pub fn placeholder(secret: &SecretRef) -> String {
    let name = secret.name().replace('%', "%25").replace('@', "%40");
    format!("{PLACEHOLDER_START}{}:{name}{PLACEHOLDER_END}", secret.kind())
}

/// `text` with each placeholder replaced by what `f` makes of its reference.
pub fn replace_placeholders<E>(text: &str, f: &mut impl FnMut(SecretRef) -> Result<String, E>) -> Result<String, E> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(PLACEHOLDER_START) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let body = &from[PLACEHOLDER_START.len()..];
        let parsed = body.find(PLACEHOLDER_END).and_then(|end| {
            let (kind, name) = body[..end].split_once(':')?;
            let name = name.replace("%40", "@").replace("%25", "%");
            Some((SecretRef::new(kind, &name)?, PLACEHOLDER_START.len() + end + PLACEHOLDER_END.len()))
        });
        match parsed {
            Some((secret, length)) => {
                out.push_str(&f(secret)?);
                rest = &from[length..];
            }
            None => {
                out.push_str(PLACEHOLDER_START);
                rest = body;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// A rendered template as people may see it: every placeholder is `***`.
pub fn redact_text(text: &str) -> String {
    replace_placeholders(text, &mut |_| Ok::<_, std::convert::Infallible>(REDACTED.to_string()))
        .unwrap_or_else(|never| match never {})
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_kubernetes_secret_reference_round_trips_as_marker_placeholder_and_text() {
        let secret = SecretRef::Kube { name: "db-auth".into(), key: "pass.word".into() };
        let marker = secret.marker().to_json();
        assert_eq!(marker, json!({ "$secret": { "k8s": { "name": "db-auth", "key": "pass.word" } } }));
        assert_eq!(SecretRef::from_json(&marker), Some(secret.clone()));
        assert_eq!(secret.to_string(), r#"secret_k8s("db-auth", "pass.word")"#);
        let text = format!("password: {}\n", placeholder(&secret));
        let revealed = replace_placeholders(&text, &mut |s| Ok::<_, ()>(format!("<{s}>"))).unwrap();
        assert_eq!(revealed, "password: <secret_k8s(\"db-auth\", \"pass.word\")>\n");
        assert_eq!(redact_text(&text), "password: ***\n");
        assert_eq!(redact(&json!({ "a": [marker] })), json!({ "a": ["***"] }));
    }

    #[test]
    fn malformed_kubernetes_markers_are_not_references() {
        for bad in [
            json!({ "$secret": { "k8s": "db/pw" } }),
            json!({ "$secret": { "k8s": { "name": "db" } } }),
            json!({ "$secret": { "k8s": { "name": "db", "key": "pw", "more": "x" } } }),
            json!({ "$secret": { "k8s": { "name": "db", "key": 1 } } }),
        ] {
            assert_eq!(SecretRef::from_json(&bad), None, "{bad}");
        }
        assert_eq!(SecretRef::new("k8s", "no-slash"), None);
    }
}
