//! The formatter: one canonical layout for every .apt file.
//!
//! The layout is a function of the tree and the comments, so formatting is idempotent.
//! Rules: 4-space indent; one statement per line; blocks always open on the header's
//! line; blank lines between statements are kept but never more than one, and never at
//! the start or end of a block; `;` separators are dropped. A map is written inline,
//! `{ a = 1, b = "x" }`, when it has at most four entries, none of them a map or a list
//! of maps, no comment inside, and the line stays within 100 columns; otherwise one
//! entry per line. Comments stay where they were: on their own line, or at the end of
//! the line they ended.

use super::ast::*;
use super::lexer::Comment;
use super::{Parse, parse};
use crate::diagnostics::Diagnostic;
use crate::source::FileId;

const INDENT: &str = "    ";
const MAX_WIDTH: usize = 100;
const MAX_INLINE_ENTRIES: usize = 4;

/// Formats `src`. Files with syntax errors are refused (their diagnostics returned):
/// formatting a half-understood file could lose text.
pub fn format_source(file: FileId, src: &str) -> Result<String, Vec<Diagnostic>> {
    let parse = parse(file, src);
    if parse.has_errors() {
        return Err(parse.diagnostics);
    }
    Ok(format_parse(&parse, src))
}

/// Formats an already parsed, error-free file.
pub fn format_parse(parse: &Parse, src: &str) -> String {
    let mut printer =
        Printer { src, comments: &parse.comments, next_comment: 0, out: String::new(), indent: 0, last_end: 0 };
    for item in &parse.file.items {
        printer.start_line(item.span.start, true);
        printer.item(item);
        printer.last_end = item.span.end;
    }
    printer.flush_comments(u32::MAX, true);
    let mut out = printer.out;
    let trimmed = out.trim_end().len();
    out.truncate(trimmed);
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

struct Printer<'a> {
    src: &'a str,
    comments: &'a [Comment],
    next_comment: usize,
    out: String,
    indent: usize,
    /// Source offset of the end of the last thing printed, to find blank lines.
    last_end: u32,
}

impl Printer<'_> {
    fn write(&mut self, text: &str) {
        self.out.push_str(text);
    }

    fn column(&self) -> usize {
        let line = self.out.rsplit('\n').next().unwrap_or("");
        line.chars().count()
    }

    fn blank_line_before(&self, pos: u32) -> bool {
        let gap = self.src.get(self.last_end as usize..pos as usize).unwrap_or("");
        gap.matches('\n').count() >= 2
    }

    /// Begins a new line for a node at source offset `pos`, first writing the comments
    /// that come before it. `keep_blank` allows one blank line (false right after `{`).
    fn start_line(&mut self, pos: u32, keep_blank: bool) {
        let keep_blank = self.flush_comments(pos, keep_blank);
        if !self.out.is_empty() {
            self.out.push('\n');
            if keep_blank && self.blank_line_before(pos) {
                self.out.push('\n');
            }
        }
        for _ in 0..self.indent {
            self.write(INDENT);
        }
    }

    /// Writes the comments before `pos`. Returns whether a blank line may still precede
    /// the node (it may whenever anything was written in between).
    fn flush_comments(&mut self, pos: u32, mut keep_blank: bool) -> bool {
        while let Some(comment) = self.comments.get(self.next_comment).filter(|c| c.span.start < pos) {
            let text = self.src[comment.span.range()].trim_end();
            let on_open_line = !comment.own_line && !self.out.is_empty() && !self.out.ends_with('\n');
            if on_open_line {
                self.write(" ");
                self.write(text);
            } else {
                if !self.out.is_empty() {
                    self.out.push('\n');
                    if keep_blank && self.blank_line_before(comment.span.start) {
                        self.out.push('\n');
                    }
                }
                for _ in 0..self.indent {
                    self.write(INDENT);
                }
                self.write(text);
            }
            keep_blank = true;
            self.last_end = comment.span.end;
            self.next_comment += 1;
        }
        keep_blank
    }

    fn has_comment_within(&self, span: Span) -> bool {
        self.comments[self.next_comment..]
            .iter()
            .take_while(|c| c.span.start < span.end)
            .any(|c| c.span.start >= span.start)
    }

    /// Writes ` {`, the statements (each through `stmt`), and `}`.
    fn block<S>(&mut self, block: &Block<S>, mut stmt: impl FnMut(&mut Self, &Spanned<S>)) {
        self.write(" {");
        self.last_end = block.span.start + 1;
        let close = block.span.end.saturating_sub(1);
        if block.stmts.is_empty() && !self.has_comment_within(block.span) {
            self.write("}");
            self.last_end = block.span.end;
            return;
        }
        self.indent += 1;
        let mut first = true;
        for s in &block.stmts {
            self.start_line(s.span.start, !first);
            stmt(self, s);
            self.last_end = s.span.end;
            first = false;
        }
        self.flush_comments(close, !first);
        self.indent -= 1;
        self.out.push('\n');
        for _ in 0..self.indent {
            self.write(INDENT);
        }
        self.write("}");
        self.last_end = block.span.end;
    }

    fn item(&mut self, item: &Item) {
        match &item.kind {
            ItemKind::Namespace(ns) => {
                self.write("namespace ");
                self.write(&ns.name.text);
                if let Some(owner) = &ns.owner {
                    self.write(" owned_by ");
                    self.write(&owner.text);
                }
            }
            ItemKind::Import(import) => {
                self.write("import ");
                self.write(&path(&import.path));
                if let Some(members) = &import.members {
                    let names: Vec<&str> = members.iter().map(|m| m.text.as_str()).collect();
                    self.write(&format!(".{{{}}}", names.join(", ")));
                }
                if let Some(alias) = &import.alias {
                    self.write(" as ");
                    self.write(&alias.text);
                }
            }
            ItemKind::Label(label) => {
                self.write(&format!("label {}: {}", label.name.text, type_expr(&label.ty)));
                if let Some(default) = &label.default {
                    self.write(" = ");
                    self.value(default);
                }
            }
            ItemKind::Service(service) => {
                self.write("service ");
                self.write(&service.name.text);
                self.block(&service.body, |p, s| match &s.node {
                    ServiceStmt::Component(c) => p.component(c),
                    ServiceStmt::Error => p.verbatim(s.span),
                });
            }
            ItemKind::Contract(contract) => {
                self.write("contract ");
                self.write(&contract.name.text);
                self.block(&contract.body, |p, s| match &s.node {
                    ContractStmt::LabelOp(op) => p.label_op(op),
                    ContractStmt::Context(c) => p.context(c),
                    ContractStmt::Error => p.verbatim(s.span),
                });
            }
            ItemKind::Rule(rule) => {
                self.write("rule ");
                self.write(&rule.name.text);
                if let Some(weight) = &rule.weight {
                    self.write(&format!(" weight {}", weight.node));
                }
                if let Some(criteria) = &rule.criteria {
                    self.write(" when ");
                    self.write(&expr(criteria));
                }
                self.block(&rule.body, |p, s| match &s.node {
                    RuleStmt::LabelOp(op) => p.label_op(op),
                    RuleStmt::Reject(message) => p.write(&format!("reject {}", string(message))),
                    RuleStmt::Place { cluster, namespace } => {
                        p.write(&format!("place on {}", path(cluster)));
                        if let Some(ns) = namespace {
                            p.write(" namespace ");
                            p.write(&expr(ns));
                        }
                    }
                    RuleStmt::Error => p.verbatim(s.span),
                });
            }
            ItemKind::Cluster(cluster) => {
                self.write("cluster ");
                self.write(&cluster.name.text);
                self.block(&cluster.body, |p, s| match &s.node {
                    ClusterStmt::Context(v) => p.write(&format!("context {}", string(v))),
                    ClusterStmt::Kubeconfig(v) => p.write(&format!("kubeconfig {}", string(v))),
                    ClusterStmt::KubeconfigSecret { name, key } => {
                        p.write(&format!("kubeconfig secret {}", string(name)));
                        if let Some(key) = key {
                            p.write(&format!(" key {}", string(key)));
                        }
                    }
                    ClusterStmt::InCluster(_) => p.write("kubeconfig in_cluster"),
                    ClusterStmt::Namespace(v) => p.write(&format!("namespace {}", string(v))),
                    ClusterStmt::Labels(map) => p.keyword_map("labels", map),
                    ClusterStmt::Error => p.verbatim(s.span),
                });
            }
            ItemKind::Claim(claim) => self.claim(claim),
            ItemKind::User(user) => self.user(user),
            ItemKind::Team(team) => {
                self.write("team ");
                self.write(&team.name.text);
                if let Some(body) = &team.body {
                    self.block(body, |p, s| match &s.node {
                        TeamStmt::Labels(map) => p.keyword_map("labels", map),
                        TeamStmt::Error => p.verbatim(s.span),
                    });
                }
            }
            ItemKind::UsersFrom(users) => self.write(&format!("users from {}", string(&users.path))),
            ItemKind::Grant(grant) => {
                self.write("grant ");
                self.write(&grant.role.text);
                match grant.scope.as_ref().map(|s| &s.node) {
                    Some(GrantScope::All) => self.write(" on *"),
                    Some(GrantScope::Namespaces(names)) => {
                        let names: Vec<&str> = names.iter().map(|n| n.text.as_str()).collect();
                        self.write(&format!(" on {}", names.join(", ")));
                    }
                    None => {}
                }
                if let Some(criteria) = &grant.criteria {
                    self.write(" when ");
                    self.write(&expr(criteria));
                }
            }
            ItemKind::Function(function) => {
                let params: Vec<String> =
                    function.params.iter().map(|p| format!("{}: {}", p.name.text, type_expr(&p.ty))).collect();
                self.write(&format!(
                    "fn {}({}) -> {}",
                    function.name.text,
                    params.join(", "),
                    type_expr(&function.ret)
                ));
            }
            ItemKind::Test(test) => {
                self.write("test ");
                self.write(&test.name.text);
                self.block(&test.body, |p, s| match &s.node {
                    TestStmt::Claim(claim) => p.claim(claim),
                    TestStmt::User(user) => p.user(user),
                    TestStmt::Expect(expect) => p.expect(expect),
                    TestStmt::Error => p.verbatim(s.span),
                });
            }
            ItemKind::Assert(assert) => {
                self.write("assert ");
                self.write(&assert.name.text);
                self.block(&assert.body, |p, s| match &s.node {
                    AssertStmt::For(clause) => p.write(&format!("for {}", for_clause(clause))),
                    AssertStmt::When(e) => p.write(&format!("when {}", expr(e))),
                    AssertStmt::Expect(a) => p.write(&format!("expect {}", assertion(&a.node))),
                    AssertStmt::Error => p.verbatim(s.span),
                });
            }
            ItemKind::Error => self.verbatim(item.span),
        }
    }

    fn claim(&mut self, claim: &Claim) {
        self.write("claim ");
        self.write(&claim.name.text);
        self.block(&claim.body, |p, s| match &s.node {
            ClaimStmt::User(v) => p.write(&format!("user {}", string(v))),
            ClaimStmt::Team(t) => p.write(&format!("team {}", t.text)),
            ClaimStmt::Contract(c) => p.write(&format!("contract {}", path(c))),
            ClaimStmt::Labels(map) => p.keyword_map("labels", map),
            ClaimStmt::Error => p.verbatim(s.span),
        });
    }

    fn user(&mut self, user: &User) {
        self.write("user ");
        self.write(&string(&user.name));
        if let Some(body) = &user.body {
            self.block(body, |p, s| match &s.node {
                UserStmt::Team(t) => p.write(&format!("team {}", t.text)),
                UserStmt::Groups(groups) => {
                    p.write("groups ");
                    p.list(groups);
                }
                UserStmt::Labels(map) => p.keyword_map("labels", map),
                UserStmt::Error => p.verbatim(s.span),
            });
        }
    }

    fn expect(&mut self, expect: &Expect) {
        match expect {
            Expect::Claim(e) => {
                self.write(&format!("expect claim {} ", path(&e.claim)));
                match &e.outcome.node {
                    ClaimOutcome::Resolved => self.write("resolved"),
                    ClaimOutcome::Rejected { pattern: None } => self.write("rejected"),
                    ClaimOutcome::Rejected { pattern: Some(p) } => {
                        self.write(&format!("rejected matches {}", string(p)))
                    }
                }
            }
            Expect::Instance(e) => {
                self.write(&format!("expect instance {} for {}", path(&e.component), path(&e.claim)));
                if let Some(body) = &e.body {
                    self.block(body, |p, s| match &s.node {
                        InstanceStmt::Context(c) => p.write(&format!("context {}", c.text)),
                        InstanceStmt::Cluster(c) => p.write(&format!("cluster {}", path(c))),
                        InstanceStmt::Namespace(n) => p.write(&format!("namespace {}", string(n))),
                        InstanceStmt::Values(map) => p.keyword_map("values", map),
                        InstanceStmt::Error => p.verbatim(s.span),
                    });
                }
            }
            Expect::NoInstance(e) => {
                self.write(&format!("expect no instance {} for {}", path(&e.component), path(&e.claim)))
            }
            Expect::Instances(n) => self.write(&format!("expect instances {}", n.node)),
        }
    }

    /// Source text as written (only reachable for trees with errors, which
    /// `format_source` refuses; kept so no input is ever dropped).
    fn verbatim(&mut self, span: Span) {
        let text = self.src[span.range()].to_string();
        self.write(&text);
    }

    fn component(&mut self, component: &Component) {
        self.write("component ");
        self.write(&component.name.text);
        match &component.source.node {
            ComponentSource::Uses(p) => self.write(&format!(" uses {}", path(p))),
            ComponentSource::Chart(c) => self.write(&format!(" chart {}", string(c))),
            ComponentSource::Manifests(m) => self.write(&format!(" manifests {}", string(m))),
        }
        if let Some(body) = &component.body {
            self.block(body, |p, s| match &s.node {
                ComponentStmt::Repo(v) => p.write(&format!("repo {}", string(v))),
                ComponentStmt::Version(v) => p.write(&format!("version {}", string(v))),
                ComponentStmt::When(e) => p.write(&format!("when {}", expr(e))),
                ComponentStmt::After(names) => {
                    let names: Vec<&str> = names.iter().map(|n| n.text.as_str()).collect();
                    p.write(&format!("after {}", names.join(", ")));
                }
                ComponentStmt::Values(map) => p.keyword_map("values", map),
                ComponentStmt::Discovery(map) => p.keyword_map("discovery", map),
                ComponentStmt::Error => p.verbatim(s.span),
            });
        }
    }

    fn context(&mut self, context: &Context) {
        self.write("context ");
        self.write(&context.name.text);
        if let Some(criteria) = &context.criteria {
            self.write(" when ");
            self.write(&expr(criteria));
        }
        self.block(&context.body, |p, s| match &s.node {
            ContextStmt::LabelOp(op) => p.label_op(op),
            ContextStmt::Allocate(keys) => {
                let keys: Vec<String> = keys.iter().map(expr).collect();
                p.write(&format!("allocate per {}", keys.join(", ")));
            }
            ContextStmt::Use(service) => p.write(&format!("use {}", path(service))),
            ContextStmt::Error => p.verbatim(s.span),
        });
    }

    fn label_op(&mut self, op: &LabelOp) {
        match op {
            LabelOp::Set { label, value } => {
                self.write(&format!("set labels.{} = ", label.text));
                self.value(value);
            }
            LabelOp::Remove { label } => self.write(&format!("remove labels.{}", label.text)),
        }
    }

    fn keyword_map(&mut self, keyword: &str, map: &MapLit) {
        self.write(keyword);
        self.write(" ");
        self.map(map);
    }

    /// An expression in value position: maps and lists may span lines.
    fn value(&mut self, value: &Expr) {
        match &value.kind {
            ExprKind::Map(map) => self.map(map),
            ExprKind::List(items) => self.list(items),
            _ => self.write(&expr(value)),
        }
    }

    fn map(&mut self, map: &MapLit) {
        let nested = map.entries.iter().any(|e| is_structured(&e.value));
        if !nested && map.entries.len() <= MAX_INLINE_ENTRIES && !self.has_comment_within(map.span) {
            let inline = map_inline(map);
            if self.column() + inline.len() <= MAX_WIDTH {
                self.write(&inline);
                self.last_end = map.span.end;
                return;
            }
        }
        self.write("{");
        self.last_end = map.span.start + 1;
        self.indent += 1;
        let mut first = true;
        for entry in &map.entries {
            self.start_line(entry.span.start, !first);
            self.write(&map_key(&entry.key));
            self.write(" = ");
            self.value(&entry.value);
            self.last_end = entry.span.end;
            first = false;
        }
        self.flush_comments(map.span.end.saturating_sub(1), !first);
        self.indent -= 1;
        self.out.push('\n');
        for _ in 0..self.indent {
            self.write(INDENT);
        }
        self.write("}");
        self.last_end = map.span.end;
    }

    fn list(&mut self, items: &[Expr]) {
        let inline = format!("[{}]", items.iter().map(expr).collect::<Vec<_>>().join(", "));
        let structured = items.iter().any(|e| matches!(e.kind, ExprKind::Map(_)));
        if !structured && self.column() + inline.len() <= MAX_WIDTH {
            self.write(&inline);
            return;
        }
        self.write("[");
        self.indent += 1;
        for item in items {
            self.start_line(item.span.start, false);
            self.value(item);
            self.write(",");
            self.last_end = item.span.end;
        }
        self.indent -= 1;
        self.out.push('\n');
        for _ in 0..self.indent {
            self.write(INDENT);
        }
        self.write("]");
    }
}

/// Whether a value is a map or a list holding maps (such maps are never inline).
fn is_structured(value: &Expr) -> bool {
    match &value.kind {
        ExprKind::Map(_) => true,
        ExprKind::List(items) => items.iter().any(|e| matches!(e.kind, ExprKind::Map(_))),
        _ => false,
    }
}

fn map_inline(map: &MapLit) -> String {
    if map.entries.is_empty() {
        return "{}".to_string();
    }
    let entries: Vec<String> =
        map.entries.iter().map(|e| format!("{} = {}", map_key(&e.key), expr(&e.value))).collect();
    format!("{{ {} }}", entries.join(", "))
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::Name(ident) => ident.text.to_string(),
        MapKey::Str(lit) => string(lit),
    }
}

fn for_clause(clause: &ForClause) -> String {
    match clause {
        ForClause::User(name) => format!("user {}", string(name)),
        ForClause::TeamUsers(team) => format!("users in team {}", team.text),
        ForClause::Group(group) => format!("users in group {}", string(group)),
        ForClause::Team(team) => format!("team {}", team.text),
        ForClause::Contract(contract) => format!("contract {}", path(contract)),
    }
}

fn assertion(assertion: &Assertion) -> String {
    let never = |never: bool| if never { "never " } else { "" };
    match assertion {
        Assertion::Resolved => "resolved".into(),
        Assertion::Rejected => "rejected".into(),
        Assertion::Failed => "failed".into(),
        Assertion::PlacedOn(clusters) => {
            format!("placed on {}", clusters.iter().map(path).collect::<Vec<_>>().join(", "))
        }
        Assertion::Reaches { never: n, target } => format!("{}reaches {}", never(*n), path(target)),
        Assertion::Shares { never: n, with } => {
            let with = match with {
                Party::User(name) => format!("user {}", string(name)),
                Party::Team(team) => format!("team {}", team.text),
                Party::Others => "others".into(),
            };
            format!("{}shares with {with}", never(*n))
        }
        Assertion::That(e) => format!("that {}", expr(e)),
    }
}

fn path(path: &Path) -> String {
    path.segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(".")
}

fn type_expr(ty: &TypeExpr) -> String {
    match &ty.kind {
        TypeExprKind::Named(name) => name.text.to_string(),
        TypeExprKind::Enum(variants) => variants.iter().map(string).collect::<Vec<_>>().join(" | "),
        TypeExprKind::List(inner) => format!("[{}]", type_expr(inner)),
    }
}

/// A string literal with canonical escapes.
fn string(lit: &StrLit) -> String {
    let mut out = String::from("\"");
    for part in &lit.parts {
        match part {
            StrPart::Text(text) => {
                let mut chars = text.chars().peekable();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        '\t' => out.push_str("\\t"),
                        '\r' => out.push_str("\\r"),
                        '$' if chars.peek() == Some(&'{') => out.push_str("\\$"),
                        c => out.push(c),
                    }
                }
            }
            StrPart::Interp(e) => {
                out.push_str("${");
                out.push_str(&expr(e));
                out.push('}');
            }
        }
    }
    out.push('"');
    out
}

/// An expression on one line.
fn expr(e: &Expr) -> String {
    match &e.kind {
        ExprKind::Int(n) => n.to_string(),
        ExprKind::Bool(b) => b.to_string(),
        ExprKind::Str(lit) => string(lit),
        ExprKind::List(items) => format!("[{}]", items.iter().map(expr).collect::<Vec<_>>().join(", ")),
        ExprKind::Map(map) => map_inline(map),
        ExprKind::Path(p) => path(p),
        ExprKind::Call { func, args } => {
            format!("{}({})", func.text, args.iter().map(expr).collect::<Vec<_>>().join(", "))
        }
        ExprKind::Unary { op: UnaryOp::Not, expr: inner } => format!("not {}", expr(inner)),
        ExprKind::Unary { op: UnaryOp::Neg, expr: inner } => format!("-{}", expr(inner)),
        ExprKind::Binary { op, lhs, rhs } => format!("{} {} {}", expr(lhs), op.as_str(), expr(rhs)),
        ExprKind::Paren(inner) => format!("({})", expr(inner)),
        ExprKind::Error => String::new(),
    }
}

/// A claim of the IR written as a `claim` block in canonical format (`aptc verify` prints a
/// counterexample so, to be pasted into a `test`). Label keys are written bare: the file it goes
/// into must see them (`import` their namespaces).
pub fn claim_block(claim: &aptc_core::ir::Claim) -> String {
    use aptc_core::ir::Consumer;
    let text = |s: &str| string(&StrLit { parts: vec![StrPart::Text(s.into())], span: Span::new(0, 0) });
    let mut out = format!("claim {} {{\n", claim.name);
    match &claim.consumer {
        Consumer::User(user) => out.push_str(&format!("    user {}\n", text(user))),
        Consumer::Team(team) => out.push_str(&format!("    team {team}\n")),
    }
    out.push_str(&format!("    contract {}\n", claim.contract));
    if !claim.labels.is_empty() {
        let entries: Vec<String> = claim
            .labels
            .iter()
            .map(|(id, value)| {
                let key = id.split_once('.').map_or(id.as_str(), |(_, key)| key);
                format!("{key} = {}", value_literal(value, &text))
            })
            .collect();
        out.push_str(&format!("    labels {{ {} }}\n", entries.join(", ")));
    }
    out.push('}');
    out
}

/// An IR value as an `.apt` literal.
fn value_literal(value: &aptc_core::ir::Value, text: &dyn Fn(&str) -> String) -> String {
    use aptc_core::ir::Value;
    match value {
        Value::Bool(b) => b.to_string(),
        Value::Int(n) => n.to_string(),
        Value::Str(s) => text(s),
        Value::List(items) => {
            format!("[{}]", items.iter().map(|v| value_literal(v, text)).collect::<Vec<_>>().join(", "))
        }
        Value::Map(entries) if entries.is_empty() => "{}".into(),
        Value::Map(entries) => format!(
            "{{ {} }}",
            entries
                .iter()
                .map(|(k, v)| format!("{} = {}", text(k), value_literal(v, text)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
