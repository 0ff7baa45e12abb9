//! Hover: what a name is, its declaration, its type and its doc comment.

use crate::db::{SourceText, Workspace, parse_file};
use crate::semantics::index::{Kind, map_key_text, workspace_index};
use crate::syntax::ast::*;

use super::{FileSpan, Target, definitions, occurrence_at, source};

/// What to show for the name under the cursor: Markdown, and the span it describes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hover {
    pub span: Span,
    pub markdown: String,
}

/// A declaration as shown to people: its header (without the body) and its docs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Declaration {
    pub header: String,
    pub docs: Option<String>,
    /// Names declared inside it (components of a service, contexts of a contract).
    pub members: Vec<SmolStr>,
    /// For a component: the discovery keys it publishes itself.
    pub publishes: Vec<SmolStr>,
}

/// Hover for the name at `offset`.
pub fn hover(db: &dyn salsa::Database, ws: Workspace, file: SourceText, offset: u32) -> Option<Hover> {
    let occurrence = occurrence_at(db, ws, file, offset)?.clone();
    let target = occurrence.target;
    let site = definitions(db, ws, &target).into_iter().next();
    let declaration = site.and_then(|site| declaration(db, ws, site)).unwrap_or_default();
    let index = workspace_index(db, ws);
    let header = match &target {
        Target::Function(name) => match index.functions.get(name) {
            Some(signature) => format!("fn {name}{signature}"),
            None => declaration.header.clone(),
        },
        _ if !declaration.header.is_empty() => declaration.header.clone(),
        target => target.describe().replace('`', ""),
    };
    let mut out = format!("```apt\n{header}\n```\n");
    let mut facts: Vec<String> = Vec::new();
    match &target {
        Target::Object(object) => {
            facts.push(format!("{} `{object}`", object.kind.as_str()));
            if object.kind == Kind::Label
                && let Some(schema) = index.labels.get(&(object.namespace.clone(), object.name.clone()))
            {
                facts.push(format!("type `{}`", schema.ty));
                if !schema.has_default {
                    facts.push("no default".to_string());
                }
            }
            match object.kind {
                Kind::Service if !declaration.members.is_empty() => {
                    facts.push(format!("components {}", quoted_list(&declaration.members)));
                }
                Kind::Contract if !declaration.members.is_empty() => {
                    facts.push(format!("contexts {}", quoted_list(&declaration.members)));
                }
                _ => {}
            }
        }
        Target::Namespace(name) => {
            if let Some(info) = index.namespaces.get(name) {
                if let Some(owner) = &info.owner {
                    facts.push(format!("owned by team `{owner}`"));
                }
                let n = info.files.len();
                facts.push(format!("{n} file{}", if n == 1 { "" } else { "s" }));
            }
        }
        Target::Component { service, .. } => {
            facts.push(format!("component of service `{service}`"));
            if !declaration.publishes.is_empty() {
                facts.push(format!("publishes {}", quoted_list(&declaration.publishes)));
            }
        }
        Target::Context { contract, .. } => facts.push(format!("context of contract `{contract}`")),
        Target::Function(_) => facts.push("standard library function".to_string()),
    }
    if let Some(site) = site
        && let Some(defining) = source(db, ws, site.file)
    {
        let name = defining.path(db).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let line = defining.text(db).get(..site.span.start as usize).map_or(0, |t| t.matches('\n').count()) + 1;
        facts.push(format!("declared in `{name}`, line {line}"));
    }
    out.push_str(&facts.join(" · "));
    out.push('\n');
    if let Some(docs) = declaration.docs.filter(|d| !d.trim().is_empty()) {
        out.push_str("\n---\n\n");
        out.push_str(&docs);
        out.push('\n');
    }
    Some(Hover { span: occurrence.span, markdown: out })
}

fn quoted_list(names: &[SmolStr]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The declaration whose name is at `site`.
pub fn declaration(db: &dyn salsa::Database, ws: Workspace, site: FileSpan) -> Option<Declaration> {
    let file = source(db, ws, site.file)?;
    let text = file.text(db);
    let parse = parse_file(db, file);
    let at = |span: Span| span.start <= site.span.start && site.span.end <= span.end;
    for item in &parse.file.items {
        let docs = item.docs.as_ref().map(|d| d.text.clone());
        let simple = |end: u32| Declaration {
            header: header(text, item.span.start, end),
            docs: docs.clone(),
            ..Declaration::default()
        };
        let found = match &item.kind {
            ItemKind::Namespace(ns) if at(ns.name.span) => Some(simple(item.span.end)),
            ItemKind::Label(l) if at(l.name.span) => Some(simple(item.span.end)),
            ItemKind::Function(f) if at(f.name.span) => Some(simple(item.span.end)),
            ItemKind::Rule(r) if at(r.name.span) => Some(simple(r.body.span.start)),
            ItemKind::Cluster(c) if at(c.name.span) => Some(simple(c.body.span.start)),
            ItemKind::Claim(c) if at(c.name.span) => Some(simple(c.body.span.start)),
            ItemKind::Team(t) if at(t.name.span) => {
                Some(simple(t.body.as_ref().map_or(item.span.end, |b| b.span.start)))
            }
            ItemKind::User(u) if at(u.name.span) => {
                Some(simple(u.body.as_ref().map_or(item.span.end, |b| b.span.start)))
            }
            ItemKind::Service(s) => {
                let components = s.body.stmts.iter().filter_map(|stmt| match &stmt.node {
                    ServiceStmt::Component(c) => Some((stmt.span, c)),
                    _ => None,
                });
                if at(s.name.span) {
                    let mut declaration = simple(s.body.span.start);
                    declaration.members = components.map(|(_, c)| c.name.text.clone()).collect();
                    Some(declaration)
                } else {
                    components.into_iter().find(|(_, c)| at(c.name.span)).map(|(span, c)| Declaration {
                        header: header(text, span.start, c.body.as_ref().map_or(span.end, |b| b.span.start)),
                        docs: c.docs.as_ref().map(|d| d.text.clone()),
                        members: Vec::new(),
                        publishes: published(c),
                    })
                }
            }
            ItemKind::Contract(c) => {
                let contexts = c.body.stmts.iter().filter_map(|stmt| match &stmt.node {
                    ContractStmt::Context(context) => Some((stmt.span, context)),
                    _ => None,
                });
                if at(c.name.span) {
                    let mut declaration = simple(c.body.span.start);
                    declaration.members = contexts.map(|(_, context)| context.name.text.clone()).collect();
                    Some(declaration)
                } else {
                    contexts.into_iter().find(|(_, context)| at(context.name.span)).map(|(span, context)| Declaration {
                        header: header(text, span.start, context.body.span.start),
                        docs: context.docs.as_ref().map(|d| d.text.clone()),
                        ..Declaration::default()
                    })
                }
            }
            _ => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The discovery keys a component publishes itself.
pub fn published(component: &Component) -> Vec<SmolStr> {
    component
        .body
        .iter()
        .flat_map(|b| &b.stmts)
        .filter_map(|stmt| match &stmt.node {
            ComponentStmt::Discovery(map) => Some(map),
            _ => None,
        })
        .flat_map(|map| &map.entries)
        .filter_map(|entry| map_key_text(&entry.key))
        .collect()
}

/// The source between `start` and `end` on one line, whitespace collapsed, at most 160
/// characters.
fn header(text: &str, start: u32, end: u32) -> String {
    let raw = text.get(start as usize..end.max(start) as usize).unwrap_or_default();
    let mut out = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.chars().count() > 160 {
        out = out.chars().take(159).collect::<String>() + "…";
    }
    out
}
