//! Claim labels that the consumer's own labels override (docs/language.md §15.1): the claim's
//! value never takes effect, which is worth a warning where it can be seen statically.

use std::collections::{BTreeMap, BTreeSet};

use crate::db::{SourceText, Workspace, parse_file, report};
use crate::diagnostics::{Diagnostic, codes};
use crate::syntax::ast::{ItemKind, MapLit, SmolStr, TeamStmt, UserStmt};

use super::file::Consumer;
use super::index::{Kind, ObjectRef, file_summary, map_key_text, workspace_index};
use super::scope::{Lookup, Scope};
use super::{all_facts, definition_sites, users};

/// The labels one file states about consumers, resolved to the labels they name: per team, and
/// per user (lower-cased) with the user's team. Read by [`check_label_overrides`] instead of the
/// file's syntax tree.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ConsumerLabels {
    pub teams: Vec<(SmolStr, BTreeSet<ObjectRef>)>,
    pub users: Vec<(String, Option<SmolStr>, BTreeSet<ObjectRef>)>,
}

/// The consumer labels of `file`.
#[salsa::tracked(returns(ref))]
pub fn consumer_labels(db: &dyn salsa::Database, ws: Workspace, file: SourceText) -> ConsumerLabels {
    let mut found = ConsumerLabels::default();
    let summary = file_summary(db, file);
    let Some(namespace) = summary.namespace.as_ref() else { return found };
    let scope = Scope::new(workspace_index(db, ws), namespace, &summary.imports);
    let resolve = |map: &MapLit| -> BTreeSet<ObjectRef> {
        map.entries
            .iter()
            .filter_map(|e| map_key_text(&e.key))
            .filter_map(|k| match scope.resolve(Kind::Label, &[k.as_str()]) {
                Lookup::Found(label, _) => Some(label),
                _ => None,
            })
            .collect()
    };
    for item in &parse_file(db, file).file.items {
        match &item.kind {
            ItemKind::Team(team) => {
                let mut set = BTreeSet::new();
                for stmt in team.body.iter().flat_map(|b| &b.stmts) {
                    if let TeamStmt::Labels(map) = &stmt.node {
                        set.extend(resolve(map));
                    }
                }
                found.teams.push((team.name.text.clone(), set));
            }
            ItemKind::User(user) => {
                let Some(name) = user.name.as_plain() else { continue };
                let (mut team, mut set) = (None, BTreeSet::new());
                for stmt in user.body.iter().flat_map(|b| &b.stmts) {
                    match &stmt.node {
                        UserStmt::Team(named) => team = Some(named.text.clone()),
                        UserStmt::Labels(map) => set.extend(resolve(map)),
                        _ => {}
                    }
                }
                found.users.push((name.to_lowercase(), team, set));
            }
            _ => {}
        }
    }
    found
}

/// Warns for each claim label that its consumer (team, or user and team) also sets.
#[salsa::tracked]
pub fn check_label_overrides(db: &dyn salsa::Database, ws: Workspace) {
    let index = workspace_index(db, ws);
    let mut team_labels: BTreeMap<SmolStr, BTreeSet<ObjectRef>> = BTreeMap::new();
    let mut user_labels: BTreeMap<String, (Option<SmolStr>, BTreeSet<ObjectRef>)> = BTreeMap::new();
    for &file in ws.files(db) {
        let found = consumer_labels(db, ws, file);
        for (team, labels) in &found.teams {
            team_labels.entry(team.clone()).or_default().extend(labels.iter().cloned());
        }
        for (user, team, labels) in &found.users {
            let entry = user_labels.entry(user.clone()).or_default();
            if team.is_some() {
                entry.0 = team.clone();
            }
            entry.1.extend(labels.iter().cloned());
        }
    }
    for (user, labels) in users::external_user_labels(db, ws) {
        let entry = user_labels.entry(user.name.to_lowercase()).or_default();
        entry.0 = entry.0.clone().or_else(|| user.team.clone());
        entry.1.extend(labels);
    }
    let sites = definition_sites(db, ws);
    for (file, facts) in all_facts(db, ws) {
        let Some((namespace, _)) = index.files.get(&file) else { continue };
        for claim in &facts.claims {
            // The consumer's own labels and its team's; most claims set none of them, so the
            // message and the claim's site are looked for only when one does.
            let (own, from_team) = match &claim.consumer {
                Some(Consumer::Team(team)) => (None, team_labels.get(team)),
                Some(Consumer::User(name)) => {
                    let Some((team, own)) = user_labels.get(name.as_str()) else { continue };
                    (Some(own), team.as_ref().and_then(|t| team_labels.get(t)))
                }
                None => continue,
            };
            let overriding = |label: &&ObjectRef| {
                own.is_some_and(|set| set.contains(*label)) || from_team.is_some_and(|set| set.contains(*label))
            };
            if !claim.labels.iter().any(|label| overriding(&label)) {
                continue;
            }
            let who = match &claim.consumer {
                Some(Consumer::Team(team)) => format!("team `{team}`"),
                Some(Consumer::User(name)) => format!("user `{name}`"),
                None => continue,
            };
            let site = ObjectRef { kind: Kind::Claim, namespace: namespace.clone(), name: claim.name.clone() };
            let Some(&(claim_file, span)) = sites.get(&site).and_then(|s| s.first()) else { continue };
            for label in claim.labels.iter().filter(overriding) {
                report(
                    db,
                    Diagnostic::new(
                        codes::OVERRIDDEN_CLAIM_LABEL,
                        claim_file,
                        span,
                        format!("claim `{}` sets label `{}`, which {who} also sets: the consumer's value wins", claim.name, label.name),
                    )
                    .with_primary_message(format!("its `{}` has no effect", label.name))
                    .with_help("remove the label from the claim, or change it on the consumer (a claim cannot contradict what is stated about its consumer)"),
                );
            }
        }
    }
}
