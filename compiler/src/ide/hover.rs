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

/// Hover for the name at `offset`: a declared object, or else a keyword or a built-in name
/// (`user.team`, `instance.id`, …).
pub fn hover(db: &dyn salsa::Database, ws: Workspace, file: SourceText, offset: u32) -> Option<Hover> {
    let Some(occurrence) = occurrence_at(db, ws, file, offset).cloned() else {
        return built_in(file.text(db), offset);
    };
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
        Target::Local { test, kind, .. } => {
            facts.push(format!("{} of test `{test}`, only while it runs", kind.as_str()));
        }
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

/// A root of expression paths: its name, what it is, and its fields (name, type, what it is).
type Root = (&'static str, &'static str, &'static [(&'static str, &'static str, &'static str)]);

/// The roots of expression paths, what each is and its fields (docs/language.md §13.3).
const ROOTS: &[Root] = &[
    ("labels", "The claim's labels at this point of resolution (§4): `labels.KEY`.", &[]),
    (
        "user",
        "The consumer of the claim being resolved: the user, or for a team's claim the team (§13.3).",
        &[
            ("name", "string", "the user's name (a team's claim: the team's)"),
            ("team", "string", "the user's team; unset if the user has none"),
            ("groups", "[string]", "the user's groups"),
            ("labels", "map", "the user's own labels, over their team's: `user.labels.KEY`"),
        ],
    ),
    (
        "claim",
        "The claim being resolved.",
        &[
            ("name", "string", "the claim's name"),
            ("namespace", "string", "the namespace the claim is declared in"),
            ("id", "string", "`namespace.name`, unique in the policy"),
        ],
    ),
    (
        "cluster",
        "The cluster a rule placed the contract on; readable once a rule has placed it (§7).",
        &[
            ("name", "string", "the cluster's name"),
            ("namespace", "string", "the Kubernetes namespace the instances go to"),
            ("labels", "map", "the cluster's labels: `cluster.labels.KEY`"),
        ],
    ),
    (
        "instance",
        "The component instance being resolved, in a component's `values` and `discovery` (§5.8).",
        &[
            ("name", "string", "a stable, unique, valid Kubernetes name; the Helm release name of a chart"),
            ("id", "string", "a hash of the instance key (24 lowercase letters and digits)"),
        ],
    ),
];

/// What each keyword does, in a line.
const KEYWORDS: &[(&str, &str)] = &[
    ("namespace", "Declares the namespace (team) this file's objects belong to (§3.2)."),
    ("owned_by", "The team that owns the namespace: its members administer it (§11)."),
    ("import", "Makes names of another namespace usable unqualified in this file (§3.4)."),
    ("as", "Renames an imported name in this file."),
    ("label", "Declares a label: a typed key claims, consumers, contracts and rules set (§4.1)."),
    ("service", "Declares a service: the components a team runs (§5)."),
    ("component", "A part of a service: a Helm chart, manifests, or a dependency on a contract (§5)."),
    ("uses", "A component that depends on another team's contract (§5.3)."),
    ("chart", "A component deployed as a Helm chart (§5.1)."),
    ("manifests", "A component deployed as Kubernetes manifest templates (§5.2)."),
    ("repo", "The Helm repository of a chart."),
    ("version", "The chart version to deploy (pin it: APT0150)."),
    ("after", "Components this one is deployed after (§5.4)."),
    ("values", "The values given to the component (Helm values, or what templates read) (§5.5)."),
    ("discovery", "What the component publishes to its siblings and its consumers (§5.6)."),
    ("contract", "Declares a contract: what consumers ask for (§6); in a claim, the contract claimed."),
    ("context", "A way a contract can be served: criteria, labels, allocation and the service used (§6)."),
    ("set", "Sets a label for the rest of resolution."),
    ("remove", "Removes a label (it reads as its default, or unset)."),
    ("allocate", "Which consumers share one instance: `allocate per KEY, …` (§6.3)."),
    ("per", "The keys of an allocation."),
    ("use", "The service a context serves the contract with."),
    ("rule", "Declares a rule: criteria and actions (set labels, reject, place) (§7)."),
    ("weight", "The order of rules: lower weights run first."),
    ("when", "The criteria: a `bool` expression."),
    ("reject", "Rejects the claim with a message."),
    ("place", "Places the contract on a cluster: `place on CLUSTER [namespace EXPR]`."),
    ("on", "The cluster of a placement, or the namespaces of a grant."),
    ("cluster", "Declares a cluster to deploy to (§8)."),
    (
        "kubeconfig",
        "Where a cluster's kubeconfig comes from: a file, `secret \"NAME\" [key \"KEY\"]` or `in_cluster` (§8).",
    ),
    ("claim", "Declares a claim: a consumer's request for a contract with labels (§9)."),
    ("user", "Declares a user (in `system`), or the user a claim is made for."),
    ("users", "`users from \"FILE\"`: users read from a YAML or JSON file (§10.3)."),
    ("from", "The file of `users from`."),
    ("team", "Declares a team (in `system`), or the team of a user or a claim."),
    ("groups", "The groups of a user, for grants."),
    ("labels", "A map of label values."),
    ("grant", "Gives a role on namespaces to the users its criteria select (§11.1)."),
    ("fn", "A standard-library function signature (in the prelude only)."),
    ("test", "Declares a policy test: claims and what must come of them (§18)."),
    ("expect", "What a test expects of a claim (§18.2), or an assertion of every possible claim (§19.2)."),
    ("assert", "Declares an assertion: what must hold of every possible claim, proved by `aptc verify` (§19)."),
    ("true", "The `bool` true."),
    ("false", "The `bool` false."),
    ("and", "Both conditions (short-circuit)."),
    ("or", "Either condition (short-circuit)."),
    ("not", "The negation of a condition."),
    ("in", "Membership in a list: `x in [a, b]`."),
    ("matches", "Regular-expression match: `s matches \"^a.*\"`."),
];

/// Hover for a keyword or a built-in name of an expression path at `offset`.
fn built_in(text: &str, offset: u32) -> Option<Hover> {
    use crate::syntax::lexer::{Token, lex};
    let lexed = lex(text);
    let tokens = &lexed.tokens;
    let at = tokens.iter().position(|(_, span)| span.start <= offset && offset <= span.end)?;
    let (token, span) = tokens[at];
    let word = match token {
        Token::Keyword(keyword) => keyword.as_str(),
        Token::Ident(name) => name,
        Token::Str(_) => return in_interpolation(text, span, offset),
        _ => return None,
    };
    let is = |i: Option<usize>, wanted: Token| i.and_then(|i| tokens.get(i)).is_some_and(|(t, _)| *t == wanted);
    let markdown = if is(at.checked_sub(1), Token::Dot) && !is(at.checked_sub(3), Token::Dot) {
        // `ROOT.FIELD`
        let root = match at.checked_sub(2).map(|i| tokens[i].0) {
            Some(Token::Keyword(keyword)) => keyword.as_str(),
            Some(Token::Ident(name)) => name,
            _ => return None,
        };
        let (_, _, fields) = ROOTS.iter().find(|(name, _, _)| *name == root)?;
        let (_, ty, what) = fields.iter().find(|(name, _, _)| *name == word)?;
        format!("```apt\n{root}.{word}: {ty}\n```\n{what}\n")
    } else if is(Some(at + 1), Token::Dot)
        && let Some((_, what, _)) = ROOTS.iter().find(|(name, _, _)| *name == word)
    {
        format!("```apt\n{word}\n```\n{what}\n")
    } else if let Token::Keyword(keyword) = token {
        let (_, what) = KEYWORDS.iter().find(|(name, _)| *name == keyword.as_str())?;
        format!("```apt\n{word}\n```\nkeyword · {what}\n")
    } else if let Some(what) = crate::ide::tokens::kubeconfig_word(tokens, at) {
        format!("```apt\n{word}\n```\nkeyword · {what}\n")
    } else {
        return None;
    };
    Some(Hover { span, markdown })
}

/// [`built_in`] inside the `${…}` of the string at `span` that holds `offset`.
fn in_interpolation(text: &str, span: Span, offset: u32) -> Option<Hover> {
    let string = text.get(span.start as usize..span.end as usize)?;
    let relative = (offset - span.start) as usize;
    let open = string.get(..relative)?.rfind("${")? + 2;
    let close = string[open..].find('}').map_or(string.len(), |i| open + i);
    if relative > close {
        return None;
    }
    let base = span.start + open as u32;
    let mut hover = built_in(&string[open..close], offset - base)?;
    hover.span = Span { start: hover.span.start + base, end: hover.span.end + base };
    Some(hover)
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
            ItemKind::Test(t) if at(t.name.span) => Some(simple(t.body.span.start)),
            ItemKind::Assert(a) if at(a.name.span) => Some(simple(a.body.span.start)),
            ItemKind::Test(t) => t.body.stmts.iter().find_map(|stmt| match &stmt.node {
                TestStmt::Claim(c) if at(c.name.span) => Some(Declaration {
                    header: header(text, stmt.span.start, c.body.span.start),
                    ..Declaration::default()
                }),
                TestStmt::User(u) if at(u.name.span) => Some(Declaration {
                    header: header(text, stmt.span.start, u.body.as_ref().map_or(stmt.span.end, |b| b.span.start)),
                    ..Declaration::default()
                }),
                _ => None,
            }),
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
