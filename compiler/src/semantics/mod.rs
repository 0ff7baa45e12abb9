//! Semantics: names, types and lints over the whole policy (docs/language.md §3–§14).
//!
//! Stages, each a salsa query: [`index`] (what each file declares) → [`file`] (resolve and
//! type-check one file against the index) → whole-policy checks here (duplicates, cycles
//! through contracts, import cycles, unused objects) and in [`acl`] (ownership and access).
//! [`check_workspace`] runs them all; its diagnostics are the accumulated [`Reported`] values.

pub mod charts;
pub mod expr;
pub mod file;
pub mod graph;
pub mod index;
pub mod manifests;
pub mod overrides;
pub mod scope;
pub mod types;
pub mod users;

use std::collections::{BTreeMap, BTreeSet};

use crate::db::{Reported, SourceText, Workspace, check_syntax, parse_file, report};
use crate::diagnostics::{self, Diagnostic, codes};
use crate::source::FileId;
use crate::syntax::ast::{ItemKind, SmolStr, Span};

use file::{FileFacts, check_file};
use graph::cycles;
use index::{Kind, ObjectRef, file_summary, workspace_index};

/// Every check of the workspace. Call [`diagnostics`] for what it reported.
#[salsa::tracked]
pub fn check_workspace(db: &dyn salsa::Database, ws: Workspace) {
    for &file in ws.files(db) {
        check_one_file(db, ws, file);
    }
    check_definitions(db, ws);
    users::check_external_users(db, ws);
    overrides::check_label_overrides(db, ws);
    check_graph(db, ws);
}

/// Every diagnostic of the workspace, sorted.
pub fn diagnostics(db: &dyn salsa::Database, ws: Workspace) -> Vec<Diagnostic> {
    let mut all: Vec<Diagnostic> =
        check_workspace::accumulated::<Reported>(db, ws).into_iter().map(|r| r.0.clone()).collect();
    diagnostics::sort(&mut all);
    all.dedup();
    all
}

/// The facts of every file, in workspace order.
pub fn all_facts(db: &dyn salsa::Database, ws: Workspace) -> Vec<(FileId, &FileFacts)> {
    ws.files(db).iter().map(|&file| (file.id(db), check_file(db, ws, file))).collect()
}

/// Every per-file check of `file`, and every per-file query the whole-policy checks read: once
/// they have run, the whole-policy checks need no syntax tree, so a host that checks file by file
/// can free each tree before the next ([`crate::check::lower_file_by_file`]).
pub fn check_one_file(db: &dyn salsa::Database, ws: Workspace, file: SourceText) {
    check_syntax(db, file);
    check_file(db, ws, file);
    charts::check_charts(db, ws, file);
    file_declarations(db, file);
    overrides::consumer_labels(db, ws, file);
}

/// What one file declares and where, as the whole-policy checks read it (not its syntax tree).
/// Spans are kept out of [`index::FileSummary`], so that an edit that only moves text leaves the
/// index as it was; they are here.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct FileDeclarations {
    /// Each object the file declares, keyed as [`definition_sites`] keys it, with its name's span.
    pub sites: Vec<(ObjectRef, Span)>,
    /// Each `namespace … owned_by …`: the namespace, the owning team and the span of its name.
    pub owners: Vec<(SmolStr, SmolStr, Span)>,
    /// Whether the file parsed without errors.
    pub parses: bool,
    /// Whether it has an item roles are computed from (a label, user, team or grant:
    /// [`crate::lower::access_program`]).
    pub access_items: bool,
}

/// Whether roles are computed from `item` (a label, user, team or grant): the items of
/// [`crate::lower::access_program`].
pub fn decides_roles(item: &ItemKind) -> bool {
    matches!(item, ItemKind::Label(_) | ItemKind::User(_) | ItemKind::Team(_) | ItemKind::Grant(_))
}

/// The declarations of `file`.
#[salsa::tracked(returns(ref))]
pub fn file_declarations(db: &dyn salsa::Database, file: SourceText) -> FileDeclarations {
    let parse = parse_file(db, file);
    let mut declarations = FileDeclarations { parses: !parse.has_errors(), ..FileDeclarations::default() };
    let namespace = file_summary(db, file).namespace.clone();
    for item in &parse.file.items {
        declarations.access_items |= decides_roles(&item.kind);
        if let ItemKind::Namespace(ns) = &item.kind
            && let Some(owner) = &ns.owner
        {
            declarations.owners.push((ns.name.text.clone(), owner.text.clone(), owner.span));
        }
        let (Some(namespace), Some((kind, name, span))) = (&namespace, declared(&item.kind)) else { continue };
        let namespace = if kind.is_global() { SmolStr::default() } else { namespace.clone() };
        let name = if kind == Kind::User { SmolStr::new(name.to_lowercase()) } else { name };
        declarations.sites.push((ObjectRef { kind, namespace, name }, span));
    }
    declarations
}

/// Where each object is declared: file and the span of its name.
#[salsa::tracked(returns(ref))]
pub fn definition_sites(db: &dyn salsa::Database, ws: Workspace) -> BTreeMap<ObjectRef, Vec<(FileId, Span)>> {
    let mut sites: BTreeMap<ObjectRef, Vec<(FileId, Span)>> = BTreeMap::new();
    for &file in ws.files(db) {
        for (object, span) in &file_declarations(db, file).sites {
            sites.entry(object.clone()).or_default().push((file.id(db), *span));
        }
    }
    sites
}

/// An interned object name: a cheap, copyable key for per-object queries (the language
/// server's go-to-definition and references ask by it).
#[salsa::interned(debug)]
pub struct ObjectName<'db> {
    #[returns(ref)]
    pub object: ObjectRef,
}

/// Where `name` is first declared.
#[salsa::tracked(returns(copy))]
pub fn definition<'db>(db: &'db dyn salsa::Database, ws: Workspace, name: ObjectName<'db>) -> Option<(FileId, Span)> {
    definition_sites(db, ws).get(name.object(db)).and_then(|sites| sites.first()).copied()
}

fn declared(item: &ItemKind) -> Option<(Kind, SmolStr, Span)> {
    Some(match item {
        ItemKind::Label(l) => (Kind::Label, l.name.text.clone(), l.name.span),
        ItemKind::Service(s) => (Kind::Service, s.name.text.clone(), s.name.span),
        ItemKind::Contract(c) => (Kind::Contract, c.name.text.clone(), c.name.span),
        ItemKind::Rule(r) => (Kind::Rule, r.name.text.clone(), r.name.span),
        ItemKind::Cluster(c) => (Kind::Cluster, c.name.text.clone(), c.name.span),
        ItemKind::Claim(c) => (Kind::Claim, c.name.text.clone(), c.name.span),
        ItemKind::Team(t) => (Kind::Team, t.name.text.clone(), t.name.span),
        ItemKind::User(u) => (Kind::User, SmolStr::new(u.name.as_plain()?), u.name.span),
        ItemKind::Test(t) => (Kind::Test, t.name.text.clone(), t.name.span),
        ItemKind::Assert(a) => (Kind::Assert, a.name.text.clone(), a.name.span),
        _ => return None,
    })
}

/// Duplicate definitions (APT0202) and namespaces given two owners (APT0206).
#[salsa::tracked]
fn check_definitions(db: &dyn salsa::Database, ws: Workspace) {
    let sites = definition_sites(db, ws);
    for (object, places) in sites {
        let Some(((first_file, first_span), rest)) = places.split_first() else { continue };
        for (file, span) in rest {
            let where_ = if object.namespace.is_empty() {
                String::new()
            } else {
                format!(" in namespace `{}`", object.namespace)
            };
            report(
                db,
                Diagnostic::new(
                    codes::DUPLICATE_DEFINITION,
                    *file,
                    *span,
                    format!("{} `{}` is declared twice{where_}", object.kind.as_str(), object.name),
                )
                .with_primary_message("declared again here")
                .with_label(*first_file, *first_span, "first declared here")
                .with_help(format!(
                    "rename one of them, or remove the second; {} names are unique per {}",
                    object.kind.as_str(),
                    if object.kind.is_global() { "policy" } else { "namespace" }
                )),
            );
        }
    }
    for user in users::external_users(db, ws) {
        let declared =
            ObjectRef { kind: Kind::User, namespace: SmolStr::default(), name: user.name.to_lowercase().into() };
        if let Some(&(file, span)) = sites.get(&declared).and_then(|s| s.first()) {
            let (from_file, from_span) = user.declared_in;
            report(
                db,
                Diagnostic::new(
                    codes::DUPLICATE_DEFINITION,
                    from_file,
                    from_span,
                    format!("user `{}` is both in this users file and declared in the policy", user.name),
                )
                .with_primary_message("listed in this file")
                .with_label(file, span, "declared here")
                .with_help("keep one of the two"),
            );
        }
    }
    let mut owners: BTreeMap<SmolStr, (SmolStr, FileId, Span)> = BTreeMap::new();
    for &file in ws.files(db) {
        for (namespace, owner, owner_span) in &file_declarations(db, file).owners {
            match owners.get(namespace) {
                Some((first, first_file, first_span)) if first != owner => report(
                    db,
                    Diagnostic::new(
                        codes::CONFLICTING_OWNERS,
                        file.id(db),
                        *owner_span,
                        format!("namespace `{namespace}` is owned by `{first}` and by `{owner}`"),
                    )
                    .with_primary_message("a second owner")
                    .with_label(*first_file, *first_span, "first owner")
                    .with_help(
                        "a namespace has one owning team; name the same team in every file, or leave `owned_by` out",
                    ),
                ),
                Some(_) => {}
                None => {
                    owners.insert(namespace.clone(), (owner.clone(), file.id(db), *owner_span));
                }
            }
        }
    }
}

/// Cycles through contracts and services (APT0402), import cycles (APT0204) and unused
/// objects (APT0406).
#[salsa::tracked]
fn check_graph(db: &dyn salsa::Database, ws: Workspace) {
    let facts = all_facts(db, ws);
    let mut graph: BTreeMap<ObjectRef, Vec<ObjectRef>> = BTreeMap::new();
    for (_, f) in &facts {
        for (from, to) in f.contract_uses.iter().chain(&f.service_uses) {
            graph.entry(from.clone()).or_default().push(to.clone());
        }
    }
    let sites = definition_sites(db, ws);
    let site = |object: &ObjectRef| definition(db, ws, ObjectName::new(db, object.clone()));
    for mut cycle in cycles(&graph) {
        // Start the story at a contract.
        if let Some(first_contract) = cycle.iter().position(|o| o.kind == Kind::Contract) {
            cycle.rotate_left(first_contract);
        }
        let start = &cycle[0];
        let shown: Vec<String> = cycle.iter().chain([&cycle[0]]).map(|o| format!("{} {o}", o.kind.as_str())).collect();
        let Some((file, span)) = site(start) else { continue };
        let mut diagnostic = Diagnostic::new(
            codes::CONTRACT_CYCLE,
            file,
            span,
            format!("contract `{start}` reaches itself: {}", shown.join(" → ")),
        )
        .with_primary_message("this contract is part of a cycle")
        .with_help(
            "resolution would never end: break the cycle by making one of these services stop using the next contract",
        );
        for member in &cycle[1..] {
            if let Some((file, span)) = site(member) {
                diagnostic = diagnostic.with_label(
                    file,
                    span,
                    format!("{} `{member}` is part of the cycle", member.kind.as_str()),
                );
            }
        }
        report(db, diagnostic);
    }
    import_cycles(db, ws, &facts);
    // A file that does not parse may hide the uses of anything: no unused-object noise then.
    let parses = ws.files(db).iter().all(|&file| file_declarations(db, file).parses);
    if parses {
        unused_objects(db, &facts, sites);
        never_set_labels(db, ws, &facts);
    }
}

/// Labels read where an unset label fails the claim (not inside `default(…)`), which have no
/// default and which nothing sets (no claim, consumer, contract, context or rule, no users file):
/// every claim that reaches the read would fail at resolution (§4.4) though the policy checks.
fn never_set_labels(db: &dyn salsa::Database, ws: Workspace, facts: &[(FileId, &FileFacts)]) {
    let index = workspace_index(db, ws);
    let external = users::external_user_labels(db, ws);
    let written: BTreeSet<&ObjectRef> =
        facts.iter().flat_map(|(_, f)| &f.label_writes).chain(external.iter().flat_map(|(_, labels)| labels)).collect();
    let mut reported = BTreeSet::new();
    for (file, f) in facts {
        for (label, span) in &f.label_reads {
            let key = (label.namespace.clone(), label.name.clone());
            if written.contains(label)
                || index.labels.get(&key).is_none_or(|l| l.has_default)
                || !reported.insert(label)
            {
                continue;
            }
            report(
                db,
                Diagnostic::new(
                    codes::NEVER_SET_LABEL,
                    *file,
                    *span,
                    format!("label `{label}` is read here, but it has no default and nothing sets it"),
                )
                .with_primary_message("every claim that reaches this read fails")
                .with_help(
                    "give the label a default (`label NAME: TYPE = VALUE`), set it in a claim, user, team, contract, \
context or rule, or read it as `default(labels.NAME, FALLBACK)`",
                ),
            );
        }
    }
}

fn import_cycles(db: &dyn salsa::Database, ws: Workspace, facts: &[(FileId, &FileFacts)]) {
    let index = workspace_index(db, ws);
    let mut graph: BTreeMap<SmolStr, Vec<SmolStr>> = BTreeMap::new();
    for (file, f) in facts {
        let Some((namespace, _)) = index.files.get(file) else { continue };
        for imported in &f.imports {
            if imported != namespace {
                graph.entry(namespace.clone()).or_default().push(imported.clone());
            }
        }
    }
    for cycle in cycles(&graph) {
        let shown: Vec<&str> = cycle.iter().chain([&cycle[0]]).map(|s| s.as_str()).collect();
        let mut labels = Vec::new();
        for (i, namespace) in cycle.iter().enumerate() {
            let next = &cycle[(i + 1) % cycle.len()];
            if let Some(site) = import_site(db, ws, namespace, next) {
                labels.push((site, format!("`{namespace}` imports `{next}`")));
            }
        }
        let Some(((file, span), _)) = labels.first().cloned() else { continue };
        let mut diagnostic = Diagnostic::new(codes::IMPORT_CYCLE, file, span, format!("namespaces import each other in a cycle: {}", shown.join(" → ")))
            .with_primary_message(labels[0].1.clone())
            .with_help("namespaces form layers: move what both need into a third namespace, or use a qualified name (`ns.name`) instead of one import");
        for ((file, span), message) in labels.into_iter().skip(1) {
            diagnostic = diagnostic.with_label(file, span, message);
        }
        report(db, diagnostic);
    }
}

fn import_site(db: &dyn salsa::Database, ws: Workspace, from: &str, to: &str) -> Option<(FileId, Span)> {
    ws.files(db).iter().find_map(|&file| {
        if file_summary(db, file).namespace.as_deref() != Some(from) {
            return None;
        }
        parse_file(db, file).file.items.iter().find_map(|item| match &item.kind {
            ItemKind::Import(import) if import.path.segments.first().is_some_and(|s| s.text == to) => {
                Some((file.id(db), item.span))
            }
            _ => None,
        })
    })
}

fn unused_objects(
    db: &dyn salsa::Database,
    facts: &[(FileId, &FileFacts)],
    sites: &BTreeMap<ObjectRef, Vec<(FileId, Span)>>,
) {
    let used: BTreeSet<&ObjectRef> = facts.iter().flat_map(|(_, f)| &f.used).collect();
    for (object, places) in sites {
        let (help, what) = match object.kind {
            Kind::Service => ("use it in a context of a contract (`use NAME`), or remove it", "no context uses it"),
            Kind::Contract => ("claim it, use it from a component (`uses`), or remove it", "nothing claims or uses it"),
            Kind::Label => ("read or set it, or remove the declaration", "nothing reads or sets it"),
            Kind::Cluster => {
                ("place something on it with a rule (`place on NAME`), or remove it", "no rule places anything on it")
            }
            _ => continue,
        };
        if used.contains(object) || object.namespace == "std" {
            continue;
        }
        let Some((file, span)) = places.first() else { continue };
        report(
            db,
            Diagnostic::new(
                codes::UNUSED_OBJECT,
                *file,
                *span,
                format!("{} `{object}` is never used", object.kind.as_str()),
            )
            .with_primary_message(what)
            .with_help(help),
        );
    }
}
