//! Users loaded from files named by `users from "PATH"` (docs/language.md §10.3).
//!
//! The file is YAML (so JSON works too): a sequence of users with `name`, and optionally
//! `team`, `groups` and `labels`. Unknown fields, unreadable files, empty names and users given
//! twice are errors at the `users from` statement. Booleans are YAML 1.2's `true` and `false`
//! only (`yes` is the string "yes").

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::db::{Workspace, report};
use crate::diagnostics::{Diagnostic, codes};
use crate::source::FileId;
use crate::syntax::ast::{SmolStr, Span};
use aptc_core::ir::Value;

use super::index::Kind;
use super::scope::{Lookup, Scope};
use super::types::Ty;

/// One user from a users file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalUser {
    pub name: String,
    pub team: Option<SmolStr>,
    pub groups: Vec<String>,
    pub labels: Vec<(SmolStr, Value)>,
    /// The `users from` statement that loaded it.
    pub declared_in: (FileId, Span),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserRecord {
    #[serde(deserialize_with = "name_field")]
    name: String,
    #[serde(default, deserialize_with = "team_field")]
    team: Option<String>,
    #[serde(default, deserialize_with = "groups_field")]
    groups: Vec<String>,
    #[serde(default, deserialize_with = "labels_field")]
    labels: BTreeMap<String, LabelValue>,
}

// Each field of a user is read by a visitor of its own, so that a value of the wrong type says
// which field it is and what it takes ("invalid type: string "admins", expected `groups`: a list
// of group names"), where the derived reader only says what the YAML reader expected next.

fn name_field<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    deserializer.deserialize_any(Text("`name`: the user's name, a string"))
}

fn team_field<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    deserializer.deserialize_any(OrNothing(Text("`team`: the name of a team, a string")))
}

/// An optional field: its visitor's value, or nothing for an empty value (`team:`, `team: null`).
struct OrNothing<V>(V);

impl<'de, V: serde::de::Visitor<'de>> serde::de::Visitor<'de> for OrNothing<V> {
    type Value = Option<V::Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        self.0.expecting(f)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.0.visit_str(v).map(Some)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.0.visit_seq(seq).map(Some)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.0.visit_map(map).map(Some)
    }
}

fn groups_field<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    deserializer.deserialize_any(OrNothing(Groups)).map(Option::unwrap_or_default)
}

fn labels_field<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<BTreeMap<String, LabelValue>, D::Error> {
    deserializer.deserialize_any(OrNothing(Labels)).map(Option::unwrap_or_default)
}

/// A string field; `.0` says which and what it takes.
struct Text(&'static str);

impl<'de> serde::de::Visitor<'de> for Text {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(self.0)
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// `groups`: a list of strings.
struct Groups;

impl<'de> serde::de::Visitor<'de> for Groups {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("`groups`: a list of group names (strings)")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut groups = Vec::new();
        while let Some(group) = seq.next_element_seed(TextSeed("each of `groups`: a group name, a string"))? {
            groups.push(group);
        }
        Ok(groups)
    }
}

/// [`Text`] as an element of a list.
struct TextSeed(&'static str);

impl<'de> serde::de::DeserializeSeed<'de> for TextSeed {
    type Value = String;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_any(Text(self.0))
    }
}

/// `labels`: a map of label names to label values.
struct Labels;

impl<'de> serde::de::Visitor<'de> for Labels {
    type Value = BTreeMap<String, LabelValue>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("`labels`: a map of label names to values")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut labels = BTreeMap::new();
        while let Some((key, value)) = map.next_entry_seed(TextSeed("a label name, a string"), LabelSeed)? {
            labels.insert(key, value);
        }
        Ok(labels)
    }
}

/// A [`LabelValue`] as a map value.
struct LabelSeed;

impl<'de> serde::de::DeserializeSeed<'de> for LabelSeed {
    type Value = LabelValue;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<LabelValue, D::Error> {
        LabelValue::deserialize(deserializer)
    }
}

/// A label's value in a users file. Deserialized by hand, not as an untagged enum, so that a value
/// of no label type is reported as what it is and what was expected (an untagged enum only says
/// that no variant matched).
enum LabelValue {
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<LabelValue>),
}

impl<'de> Deserialize<'de> for LabelValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<LabelValue, D::Error> {
        deserializer.deserialize_any(LabelVisitor)
    }
}

struct LabelVisitor;

impl<'de> serde::de::Visitor<'de> for LabelVisitor {
    type Value = LabelValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a label value: a bool (`true` or `false`), an integer, a string, or a list of them")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<LabelValue, E> {
        Ok(LabelValue::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<LabelValue, E> {
        Ok(LabelValue::Int(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<LabelValue, E> {
        i64::try_from(v).map(LabelValue::Int).map_err(|_| E::custom(format!("the integer {v} is too large")))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<LabelValue, E> {
        Ok(LabelValue::Str(v.to_string()))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<LabelValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(LabelValue::List(items))
    }
}

impl From<LabelValue> for Value {
    fn from(value: LabelValue) -> Value {
        match value {
            LabelValue::Bool(b) => Value::Bool(b),
            LabelValue::Int(n) => Value::Int(n),
            LabelValue::Str(s) => Value::Str(s),
            LabelValue::List(items) => Value::List(items.into_iter().map(Value::from).collect()),
        }
    }
}

/// Every user of every users file of the workspace; problems are reported.
#[salsa::tracked(returns(ref))]
pub fn external_users(db: &dyn salsa::Database, ws: Workspace) -> Vec<ExternalUser> {
    let mut users = Vec::new();
    let mut seen: HashMap<String, String> = HashMap::new();
    for &file in ws.users_files(db) {
        let (declared_in, span) = (file.declared_in(db), file.span(db));
        let shown = file.path(db).display().to_string();
        let problem = |message: String, help: &str| {
            Diagnostic::new(codes::INVALID_USERS_FILE, declared_in, span, message)
                .with_primary_message("users file named here")
                .with_help(help)
        };
        let text = match file.text(db) {
            Ok(text) => text,
            Err(reason) => {
                report(
                    db,
                    problem(
                        format!("cannot read users file `{shown}`: {reason}"),
                        "the path is relative to the directory of this .apt file",
                    ),
                );
                continue;
            }
        };
        // YAML 1.2 booleans only: `yes`, `no`, `on`, `off` are strings, so a bool label given one
        // is a type error rather than a silent guess.
        let strict = serde_saphyr::options! { strict_booleans: true };
        let records: Vec<UserRecord> = match serde_saphyr::from_str_with_options(text, strict) {
            Ok(records) => records,
            Err(error) => {
                let text = error.to_string();
                let line = text.lines().next().unwrap_or_default().trim();
                let first = line.strip_prefix("error:").unwrap_or(line).trim().to_string();
                report(
                    db,
                    problem(
                        format!("users file `{shown}` is not valid: {first}"),
                        "it is a YAML (or JSON) list of users: `- name: …` with optional `team`, `groups` and `labels`",
                    ),
                );
                continue;
            }
        };
        for record in records {
            if record.name.trim().is_empty() {
                report(
                    db,
                    problem("a user in this users file has an empty name".to_string(), "give every user a name"),
                );
                continue;
            }
            let key = record.name.to_lowercase();
            if let Some(other) = seen.insert(key, shown.clone()) {
                report(
                    db,
                    problem(
                        format!("user `{}` is listed twice (also in `{other}`)", record.name),
                        "list each user once",
                    ),
                );
                continue;
            }
            users.push(ExternalUser {
                name: record.name,
                team: record.team.map(SmolStr::from),
                groups: record.groups,
                labels: record.labels.into_iter().map(|(k, v)| (SmolStr::from(k), Value::from(v))).collect(),
                declared_in: (declared_in, span),
            });
        }
    }
    users
}

/// Users from files must name declared teams and labels, with values of the labels' types.
#[salsa::tracked]
pub fn check_external_users(db: &dyn salsa::Database, ws: Workspace) {
    let index = super::index::workspace_index(db, ws);
    for user in external_users(db, ws) {
        let (file, span) = user.declared_in;
        let Some(source) = ws.files(db).iter().copied().find(|f| f.id(db) == file) else { continue };
        let summary = super::index::file_summary(db, source);
        let Some(namespace) = summary.namespace.as_ref() else { continue };
        let scope = Scope::new(index, namespace, &summary.imports);
        if let Some(team) = &user.team
            && !index.has(Kind::Team, "", team)
        {
            report(
                db,
                Diagnostic::new(
                    codes::UNRESOLVED_NAME,
                    file,
                    span,
                    format!("user `{}` in this users file names team `{team}`, which is not declared", user.name),
                )
                .with_primary_message("users file named here")
                .with_help(format!("declare it in namespace `system`: `team {team}`")),
            );
        }
        for (key, value) in &user.labels {
            let label = match scope.resolve(Kind::Label, &[key.as_str()]) {
                Lookup::Found(label, _) => label,
                _ => {
                    report(
                        db,
                        Diagnostic::new(
                            codes::UNDECLARED_LABEL,
                            file,
                            span,
                            format!(
                                "user `{}` in this users file has label `{key}`, which is not visible here",
                                user.name
                            ),
                        )
                        .with_primary_message("users file named here")
                        .with_help("declare the label (or import its namespace) in the file that says `users from`"),
                    );
                    continue;
                }
            };
            let Some(schema) = index.labels.get(&(label.namespace.clone(), label.name.clone())) else { continue };
            if !value_fits(value, &schema.ty) {
                report(
                    db,
                    Diagnostic::new(
                        codes::TYPE_MISMATCH,
                        file,
                        span,
                        format!(
                            "user `{}` in this users file gives label `{key}` a value that is not `{}`",
                            user.name, schema.ty
                        ),
                    )
                    .with_primary_message("users file named here")
                    .with_help(format!("write a `{}` for `{key}` in the users file", schema.ty)),
                );
            }
        }
    }
}

/// A value read from a users file, as the label's declared type reads it: for a string or enum
/// label any scalar is its text (`region: no` is "no"), never a guessed bool or number.
pub fn as_declared(value: &Value, ty: &Ty) -> Value {
    match (value, ty) {
        (Value::Int(n), Ty::String | Ty::Enum(_)) => Value::Str(n.to_string()),
        (Value::Bool(b), Ty::String | Ty::Enum(_)) => Value::Str(b.to_string()),
        (Value::List(items), Ty::List(inner)) => Value::List(items.iter().map(|i| as_declared(i, inner)).collect()),
        _ => value.clone(),
    }
}

/// Whether a value read from a users file has type `ty` (enums: one of their values).
fn value_fits(value: &Value, ty: &Ty) -> bool {
    let value = &as_declared(value, ty);
    match (value, ty) {
        (_, Ty::Any | Ty::Unknown) => true,
        (Value::Str(_), Ty::String) | (Value::Int(_), Ty::Int) | (Value::Bool(_), Ty::Bool) => true,
        (Value::Str(s), Ty::Enum(variants)) => variants.iter().any(|v| v == s),
        (Value::List(items), Ty::List(inner)) => items.iter().all(|item| value_fits(item, inner)),
        _ => false,
    }
}

/// The labels each users-file user sets, resolved in the scope of the file that loads it (keys
/// that resolve to nothing are left out: [`check_external_users`] reports them).
pub fn external_user_labels(
    db: &dyn salsa::Database,
    ws: Workspace,
) -> Vec<(&ExternalUser, std::collections::BTreeSet<super::index::ObjectRef>)> {
    let index = super::index::workspace_index(db, ws);
    external_users(db, ws)
        .iter()
        .filter_map(|user| {
            let source = ws.files(db).iter().copied().find(|f| f.id(db) == user.declared_in.0)?;
            let summary = super::index::file_summary(db, source);
            let namespace = summary.namespace.as_ref()?;
            let scope = Scope::new(index, namespace, &summary.imports);
            let labels = user
                .labels
                .iter()
                .filter_map(|(k, _)| match scope.resolve(Kind::Label, &[k.as_str()]) {
                    Lookup::Found(label, _) => Some(label),
                    _ => None,
                })
                .collect();
            Some((user, labels))
        })
        .collect()
}
