//! Secret references (docs/language.md §5.9): `secret_env(NAME)` and `secret_file(PATH)` evaluate
//! to a *marker*, `{"$secret": {"env": "NAME"}}` or `{"$secret": {"file": "PATH"}}`, which the
//! desired state, plans and stores carry instead of the secret. This module is the pure half:
//! recognising markers, [`redact`]ing them for people, and the textual [`placeholder`] a secret
//! stands as inside a rendered template. Reading secrets (revealing, digests, scrubbing tool
//! output) is I/O and lives in the runtime.

use std::collections::BTreeSet;
use std::fmt;

use serde_json::Value as Json;

use crate::ir::{SECRET_KEY, Value};
use crate::resolve::DesiredState;

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
}

impl SecretRef {
    /// The marker the resolver puts into the desired state for this reference.
    pub fn marker(&self) -> Value {
        Value::Map(vec![(
            SECRET_KEY.to_string(),
            Value::Map(vec![(self.kind().to_string(), Value::Str(self.name().to_string()))]),
        )])
    }

    /// The reference a JSON value is the marker of, if it is one.
    pub fn from_json(value: &Json) -> Option<SecretRef> {
        let outer = value.as_object().filter(|o| o.len() == 1)?;
        let inner = outer.get(SECRET_KEY)?.as_object().filter(|o| o.len() == 1)?;
        let (kind, name) = inner.iter().next()?;
        SecretRef::new(kind, name.as_str()?)
    }

    /// The reference of a marker's kind (`env`, `file`) and name.
    pub fn new(kind: &str, name: &str) -> Option<SecretRef> {
        match kind {
            "env" => Some(SecretRef::Env(name.to_string())),
            "file" => Some(SecretRef::File(name.to_string())),
            _ => None,
        }
    }

    /// `env` or `file`.
    pub fn kind(&self) -> &'static str {
        match self {
            SecretRef::Env(_) => "env",
            SecretRef::File(_) => "file",
        }
    }

    /// The variable's name or the file's path, as written.
    pub fn name(&self) -> &str {
        match self {
            SecretRef::Env(name) | SecretRef::File(name) => name,
        }
    }
}

impl fmt::Display for SecretRef {
    /// As the policy wrote it: `secret_env("NAME")`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "secret_{}({:?})", self.kind(), self.name())
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

/// A desired state as people may see it (`aptc plan`): every secret of every instance is `***`.
pub fn redact_state(state: &DesiredState) -> DesiredState {
    let mut shown = state.clone();
    for instance in shown.instances.values_mut() {
        instance.values = redact(&instance.values);
        instance.discovery = redact(&instance.discovery);
    }
    shown
}

/// [`redact_state`] of a state the caller owns: each instance's values and discovery are replaced
/// in place, so nothing else of the state is copied (`aptc plan` on 10,000 claims).
pub fn redact_state_in_place(state: &mut DesiredState) {
    for instance in state.instances.values_mut() {
        instance.values = redact(&instance.values);
        instance.discovery = redact(&instance.discovery);
    }
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
