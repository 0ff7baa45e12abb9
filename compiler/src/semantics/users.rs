//! Users loaded from files named by `users from "PATH"` (docs/language.md §10.3).
//!
//! The file is YAML (so JSON works too): a sequence of users with `name`, and optionally
//! `team`, `groups` and `labels`. Unknown fields, unreadable files and users given twice are
//! errors at the `users from` statement.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::db::{Workspace, report};
use crate::diagnostics::{Diagnostic, codes};
use crate::source::FileId;
use crate::syntax::ast::{SmolStr, Span};

use super::acl::Value;

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
    name: String,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, LabelValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum LabelValue {
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<LabelValue>),
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
        let records: Vec<UserRecord> = match serde_saphyr::from_str(text) {
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
