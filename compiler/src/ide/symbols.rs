//! The outline of a file, symbols across the workspace, and folding ranges.

use crate::db::{SourceText, Workspace, parse_file};
use crate::source::FileId;
use crate::syntax::ast::*;
use crate::syntax::lexer::CommentKind;

/// What a symbol is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SymbolKind {
    Namespace,
    Label,
    Service,
    Component,
    Contract,
    Context,
    Rule,
    Cluster,
    Claim,
    User,
    Team,
    Grant,
    Function,
    /// A `test` block; its claims and users are its children.
    Test,
    /// An `assert` block.
    Assert,
}

/// A declaration in the outline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    pub name: String,
    pub kind: SymbolKind,
    /// A type (labels) or a source (components).
    pub detail: Option<String>,
    /// The whole declaration.
    pub span: Span,
    /// Its name.
    pub selection: Span,
    pub children: Vec<Symbol>,
}

/// The declarations of `file`, with components under services and contexts under contracts.
pub fn document_symbols(db: &dyn salsa::Database, file: SourceText) -> Vec<Symbol> {
    let text = file.text(db);
    let parse = parse_file(db, file);
    let slice =
        |span: Span| text.get(span.range()).unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
    let symbol = |name: &str, kind, span, selection| Symbol {
        name: name.to_string(),
        kind,
        detail: None,
        span,
        selection,
        children: Vec::new(),
    };
    let mut out = Vec::new();
    for item in &parse.file.items {
        let span = item.span;
        let found = match &item.kind {
            ItemKind::Namespace(ns) => {
                let mut s = symbol(&ns.name.text, SymbolKind::Namespace, span, ns.name.span);
                s.detail = ns.owner.as_ref().map(|o| format!("owned by {}", o.text));
                s
            }
            ItemKind::Label(label) => {
                let mut s = symbol(&label.name.text, SymbolKind::Label, span, label.name.span);
                s.detail = Some(slice(label.ty.span));
                s
            }
            ItemKind::Service(service) => {
                let mut s = symbol(&service.name.text, SymbolKind::Service, span, service.name.span);
                for stmt in &service.body.stmts {
                    if let ServiceStmt::Component(c) = &stmt.node {
                        let mut child = symbol(&c.name.text, SymbolKind::Component, stmt.span, c.name.span);
                        child.detail = Some(slice(c.source.span));
                        s.children.push(child);
                    }
                }
                s
            }
            ItemKind::Contract(contract) => {
                let mut s = symbol(&contract.name.text, SymbolKind::Contract, span, contract.name.span);
                for stmt in &contract.body.stmts {
                    if let ContractStmt::Context(c) = &stmt.node {
                        let mut child = symbol(&c.name.text, SymbolKind::Context, stmt.span, c.name.span);
                        child.detail = c.criteria.as_ref().map(|e| format!("when {}", slice(e.span)));
                        s.children.push(child);
                    }
                }
                s
            }
            ItemKind::Rule(rule) => symbol(&rule.name.text, SymbolKind::Rule, span, rule.name.span),
            ItemKind::Cluster(cluster) => symbol(&cluster.name.text, SymbolKind::Cluster, span, cluster.name.span),
            ItemKind::Claim(claim) => symbol(&claim.name.text, SymbolKind::Claim, span, claim.name.span),
            ItemKind::Team(team) => symbol(&team.name.text, SymbolKind::Team, span, team.name.span),
            ItemKind::User(user) => {
                let name = user.name.as_plain().unwrap_or_else(|| slice(user.name.span));
                symbol(&name, SymbolKind::User, span, user.name.span)
            }
            ItemKind::Grant(grant) => {
                symbol(&format!("grant {}", grant.role.text), SymbolKind::Grant, span, grant.role.span)
            }
            ItemKind::Assert(assert) => symbol(&assert.name.text, SymbolKind::Assert, span, assert.name.span),
            ItemKind::Test(test) => {
                let mut s = symbol(&test.name.text, SymbolKind::Test, span, test.name.span);
                for stmt in &test.body.stmts {
                    let child = match &stmt.node {
                        TestStmt::Claim(c) => {
                            let mut child = symbol(&c.name.text, SymbolKind::Claim, stmt.span, c.name.span);
                            child.detail = c.body.stmts.iter().find_map(|s| match &s.node {
                                ClaimStmt::Contract(path) => Some(format!("contract {}", slice(path.span))),
                                _ => None,
                            });
                            child
                        }
                        TestStmt::User(u) => {
                            let name = u.name.as_plain().unwrap_or_else(|| slice(u.name.span));
                            symbol(&name, SymbolKind::User, stmt.span, u.name.span)
                        }
                        _ => continue,
                    };
                    s.children.push(child);
                }
                let expectations = test.body.stmts.iter().filter(|s| matches!(s.node, TestStmt::Expect(_))).count();
                s.detail = Some(format!("{expectations} expectation{}", if expectations == 1 { "" } else { "s" }));
                s
            }
            ItemKind::Function(f) => {
                let mut s = symbol(&f.name.text, SymbolKind::Function, span, f.name.span);
                s.detail = Some(slice(Span { start: f.name.span.end, end: span.end }));
                s
            }
            _ => continue,
        };
        out.push(found);
    }
    out
}

/// A symbol of the workspace: where it is and what contains it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkspaceSymbol {
    pub file: FileId,
    pub symbol: Symbol,
    /// The service or contract around it, or the namespace of the file.
    pub container: Option<String>,
}

/// Symbols of every file whose name matches `query` (its characters in order, any case;
/// an empty query matches everything), at most `limit` of them.
pub fn workspace_symbols(db: &dyn salsa::Database, ws: Workspace, query: &str, limit: usize) -> Vec<WorkspaceSymbol> {
    let query: Vec<char> = query.to_lowercase().chars().collect();
    let matches = |name: &str| {
        let mut wanted = query.iter().peekable();
        for c in name.to_lowercase().chars() {
            if wanted.peek() == Some(&&c) {
                wanted.next();
            }
        }
        wanted.peek().is_none()
    };
    let mut out = Vec::new();
    for &file in ws.files(db) {
        let id = file.id(db);
        let symbols = document_symbols(db, file);
        let namespace = symbols.iter().find(|s| s.kind == SymbolKind::Namespace).map(|s| s.name.clone());
        for symbol in symbols {
            for child in &symbol.children {
                if matches(&child.name) {
                    out.push(WorkspaceSymbol { file: id, symbol: child.clone(), container: Some(symbol.name.clone()) });
                }
            }
            if matches(&symbol.name) {
                let container = if symbol.kind == SymbolKind::Namespace { None } else { namespace.clone() };
                out.push(WorkspaceSymbol { file: id, symbol: Symbol { children: Vec::new(), ..symbol }, container });
            }
            if out.len() >= limit {
                out.truncate(limit);
                return out;
            }
        }
    }
    out
}

/// What a folding range holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FoldKind {
    Region,
    Comment,
    Imports,
}

/// A range an editor may fold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fold {
    pub span: Span,
    pub kind: FoldKind,
}

/// Blocks and maps over several lines, runs of comments and of imports.
pub fn folding_ranges(db: &dyn salsa::Database, file: SourceText) -> Vec<Fold> {
    let text = file.text(db);
    let parse = parse_file(db, file);
    let mut out = Vec::new();
    let mut region = |span: Span| out.push(Fold { span, kind: FoldKind::Region });
    for item in &parse.file.items {
        match &item.kind {
            ItemKind::Service(service) => {
                region(service.body.span);
                for stmt in &service.body.stmts {
                    if let ServiceStmt::Component(c) = &stmt.node
                        && let Some(body) = &c.body
                    {
                        region(body.span);
                        for stmt in &body.stmts {
                            if let ComponentStmt::Values(map) | ComponentStmt::Discovery(map) = &stmt.node {
                                map_folds(map, &mut region);
                            }
                        }
                    }
                }
            }
            ItemKind::Contract(contract) => {
                region(contract.body.span);
                for stmt in &contract.body.stmts {
                    if let ContractStmt::Context(c) = &stmt.node {
                        region(c.body.span);
                    }
                }
            }
            ItemKind::Rule(rule) => region(rule.body.span),
            ItemKind::Cluster(cluster) => {
                region(cluster.body.span);
                for stmt in &cluster.body.stmts {
                    if let ClusterStmt::Labels(map) = &stmt.node {
                        map_folds(map, &mut region);
                    }
                }
            }
            ItemKind::Claim(claim) => claim_folds(claim, &mut region),
            ItemKind::User(user) => user_folds(user, &mut region),
            ItemKind::Assert(assert) => region(assert.body.span),
            ItemKind::Test(test) => {
                region(test.body.span);
                for stmt in &test.body.stmts {
                    match &stmt.node {
                        TestStmt::Claim(claim) => claim_folds(claim, &mut region),
                        TestStmt::User(user) => user_folds(user, &mut region),
                        TestStmt::Expect(Expect::Instance(expect)) => {
                            if let Some(body) = &expect.body {
                                region(body.span);
                                for stmt in &body.stmts {
                                    if let InstanceStmt::Values(map) = &stmt.node {
                                        map_folds(map, &mut region);
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            ItemKind::Team(team) => {
                if let Some(body) = &team.body {
                    region(body.span);
                }
            }
            _ => {}
        }
    }
    // Runs of imports.
    let mut run: Option<Span> = None;
    for item in &parse.file.items {
        match (&item.kind, run) {
            (ItemKind::Import(_), Some(span)) => run = Some(span.to(item.span)),
            (ItemKind::Import(_), None) => run = Some(item.span),
            (_, Some(span)) => {
                out.push(Fold { span, kind: FoldKind::Imports });
                run = None;
            }
            _ => {}
        }
    }
    if let Some(span) = run {
        out.push(Fold { span, kind: FoldKind::Imports });
    }
    // Runs of line comments on their own lines, and block comments.
    let mut run: Option<Span> = None;
    for comment in &parse.comments {
        if comment.kind == CommentKind::Block {
            out.push(Fold { span: comment.span, kind: FoldKind::Comment });
            continue;
        }
        let joins = run.is_some_and(|r| {
            comment.own_line
                && text
                    .get(r.end as usize..comment.span.start as usize)
                    .is_some_and(|gap| gap.trim().is_empty() && gap.matches('\n').count() == 1)
        });
        match run {
            Some(r) if joins => run = Some(r.to(comment.span)),
            _ => {
                if let Some(r) = run {
                    out.push(Fold { span: r, kind: FoldKind::Comment });
                }
                run = comment.own_line.then_some(comment.span);
            }
        }
    }
    if let Some(r) = run {
        out.push(Fold { span: r, kind: FoldKind::Comment });
    }
    out.retain(|fold| text.get(fold.span.range()).is_some_and(|t| t.contains('\n')));
    out.sort_by_key(|f| (f.span.start, std::cmp::Reverse(f.span.end)));
    out.dedup();
    out
}

fn claim_folds(claim: &Claim, region: &mut impl FnMut(Span)) {
    region(claim.body.span);
    for stmt in &claim.body.stmts {
        if let ClaimStmt::Labels(map) = &stmt.node {
            map_folds(map, region);
        }
    }
}

fn user_folds(user: &User, region: &mut impl FnMut(Span)) {
    if let Some(body) = &user.body {
        region(body.span);
        for stmt in &body.stmts {
            if let UserStmt::Labels(map) = &stmt.node {
                map_folds(map, region);
            }
        }
    }
}

fn map_folds(map: &MapLit, region: &mut impl FnMut(Span)) {
    region(map.span);
    for entry in &map.entries {
        if let ExprKind::Map(inner) = &entry.value.kind {
            map_folds(inner, region);
        }
    }
}
