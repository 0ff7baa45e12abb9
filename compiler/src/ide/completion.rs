//! Completion: what may be written at the cursor.
//!
//! The cursor's surroundings are read from tokens rather than from the tree, so that a
//! half-written statement (the usual state of a file being typed) still gets answers: the
//! blocks around the cursor come from the braces before it, and the place inside a
//! statement from the few tokens before the cursor. Names come from the index and resolve as
//! the checker resolves them.

use std::collections::BTreeSet;

use crate::db::{SourceText, Workspace, parse_file};
use crate::semantics::index::{ImportSummary, Index, Kind, ObjectRef, file_summary, workspace_index};
use crate::semantics::scope::{Lookup, Scope};
use crate::semantics::types::Ty;
use crate::syntax::ast::{ComponentSource, ItemKind, ServiceStmt, SmolStr, Span};
use crate::syntax::lexer::{CommentKind, Keyword, Token, lex};
use aptc_core::ir::SYSTEM_NAMESPACE;

use crate::syntax::validate::{ROLES, STD_NAMESPACE};

use super::hover::{declaration, published};
use super::{FileSpan, Target, definitions};

mod frames;

use frames::{
    Frame, FrameKind, Tokens, block, continues, frame_of, frames, interpolation_start, path_before, split_prefix,
    starts_item,
};

/// What a completion item is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CompletionKind {
    Keyword,
    Namespace,
    Label,
    Service,
    Contract,
    Cluster,
    Team,
    User,
    Component,
    /// A claim (in a test's expectations).
    Claim,
    /// A context of a contract (in an expected instance).
    Context,
    /// A field of `user`, `claim`, `cluster` or `instance`, or `discovery`.
    Field,
    /// A root name of expressions (`labels`, `user`, …).
    Variable,
    Function,
    EnumValue,
    DiscoveryKey,
    Role,
}

/// One completion item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub label: String,
    pub kind: CompletionKind,
    /// A type or signature.
    pub detail: Option<String>,
    /// Markdown (the doc comment of the declaration).
    pub documentation: Option<String>,
    /// What to insert, when it is not the label.
    pub insert: Option<String>,
}

impl Completion {
    fn new(label: impl Into<String>, kind: CompletionKind) -> Completion {
        Completion { label: label.into(), kind, detail: None, documentation: None, insert: None }
    }

    fn detail(mut self, detail: impl Into<String>) -> Completion {
        self.detail = Some(detail.into());
        self
    }
}

/// The items, and the span of source they replace (the part of the word before the cursor).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completions {
    pub replace: Span,
    pub items: Vec<Completion>,
}

/// Lists longer than this come without doc comments (each costs a look at its declaration).
const MAX_DOCUMENTED: usize = 200;

/// Completions at `offset` of `file`.
pub fn completions(db: &dyn salsa::Database, ws: Workspace, file: SourceText, offset: u32) -> Completions {
    let text: &str = file.text(db);
    let mut offset = (offset as usize).min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let offset = offset as u32;
    let lexed = lex(text);
    let in_comment = lexed.comments.iter().any(|c| match c.kind {
        CommentKind::Block => c.span.start < offset && offset < c.span.end,
        _ => c.span.start < offset && offset <= c.span.end,
    });
    if in_comment {
        return Completions { replace: Span { start: offset, end: offset }, items: Vec::new() };
    }
    let summary = file_summary(db, file);
    let namespace = summary.namespace.clone().unwrap_or_default();
    let index = workspace_index(db, ws);
    let tokens = &lexed.tokens;
    let string = tokens.iter().position(|(token, span)| match token {
        Token::Str(s) => span.start < offset && (offset < span.end || (offset == span.end && !s.terminated)),
        _ => false,
    });
    let cx = Cx { db, ws, file, index, namespace: &namespace, imports: &summary.imports, tokens };
    match string {
        Some(i) => {
            let span = tokens[i].1;
            let frames = frames(&tokens[..i]);
            match interpolation_start(text, span.start, offset) {
                Some(start) => {
                    let inner = lex(&text[start as usize..offset as usize]);
                    let shifted: Vec<(Token, Span)> = inner
                        .tokens
                        .iter()
                        .map(|&(t, s)| (t, Span { start: s.start + start, end: s.end + start }))
                        .collect();
                    let (replace, before) = split_prefix(&shifted, offset);
                    let mut items = cx.after_tokens(before, &frames, true);
                    dedup(&mut items);
                    Completions { replace, items }
                }
                None => {
                    // Inside a plain string: the values of the enum label it is compared with
                    // or assigned to.
                    let replace = Span { start: span.start + 1, end: offset };
                    let mut items = cx.values_for(&tokens[..i], &frames);
                    for item in &mut items {
                        item.insert = Some(item.label.trim_matches('"').to_string());
                    }
                    items.retain(|i| i.kind == CompletionKind::EnumValue);
                    Completions { replace, items }
                }
            }
        }
        None => {
            let before_cursor = tokens.partition_point(|(_, s)| s.start < offset);
            let (replace, before) = split_prefix(&tokens[..before_cursor], offset);
            let frames = frames(before);
            let at_line_start = text[..replace.start as usize].rsplit('\n').next().is_none_or(|l| l.trim().is_empty());
            let mut items = if at_line_start && !continues(before) {
                cx.statement_keywords(&frames)
            } else {
                cx.after_tokens(before, &frames, false)
            };
            dedup(&mut items);
            Completions { replace, items }
        }
    }
}

fn dedup(items: &mut Vec<Completion>) {
    let mut seen = BTreeSet::new();
    items.retain(|item| seen.insert((item.label.clone(), item.kind as u8)));
}

struct Cx<'a> {
    db: &'a dyn salsa::Database,
    ws: Workspace,
    file: SourceText,
    index: &'a Index,
    namespace: &'a SmolStr,
    imports: &'a [ImportSummary],
    /// Every token of the file.
    tokens: &'a Tokens<'a>,
}

impl Cx<'_> {
    fn scope(&self) -> Scope<'_> {
        Scope::new(self.index, self.namespace, self.imports)
    }

    fn docs(&self, target: &Target) -> Option<String> {
        let site: FileSpan = definitions(self.db, self.ws, target).into_iter().next()?;
        declaration(self.db, self.ws, site)?.docs
    }

    /// The completions after `before` (the tokens up to the word being typed).
    fn after_tokens(&self, before: &Tokens, frames: &[Frame], in_interpolation: bool) -> Vec<Completion> {
        let n = before.len();
        let last = before.last().map(|(t, _)| *t);
        let block_kind = block(frames).map(|f| f.kind);
        if !in_interpolation
            && matches!(block_kind, Some(FrameKind::Test | FrameKind::Expectation))
            && let Some(items) = self.in_test(before, frames)
        {
            return items;
        }
        match last {
            None if in_interpolation => self.expression(frames),
            None => self.statement_keywords(frames),
            Some(Token::Dot) => self.after_dot(before, frames),
            Some(Token::Keyword(keyword)) => match keyword {
                Keyword::Uses => self.objects(Kind::Contract, CompletionKind::Contract),
                Keyword::Use => self.objects(Kind::Service, CompletionKind::Service),
                Keyword::Contract if block_kind == Some(FrameKind::Claim) => {
                    self.objects(Kind::Contract, CompletionKind::Contract)
                }
                Keyword::On if n >= 2 && before[n - 2].0 == Token::Keyword(Keyword::Place) => {
                    self.objects(Kind::Cluster, CompletionKind::Cluster)
                }
                Keyword::On => self.namespaces(),
                Keyword::After => self.components(frames, true),
                Keyword::OwnedBy => self.objects(Kind::Team, CompletionKind::Team),
                Keyword::Team if matches!(block_kind, Some(FrameKind::Claim | FrameKind::User)) => {
                    self.objects(Kind::Team, CompletionKind::Team)
                }
                Keyword::User if block_kind == Some(FrameKind::Claim) => {
                    let mut items = self.users();
                    items.extend(self.test_users(frames));
                    items
                }
                Keyword::Import => self.namespaces(),
                Keyword::Namespace if frames.is_empty() => self.namespaces(),
                Keyword::Grant => {
                    ROLES.iter().map(|r| Completion::new(*r, CompletionKind::Role).detail("role")).collect()
                }
                Keyword::Allocate => vec![Completion::new("per", CompletionKind::Keyword)],
                // `kubeconfig "PATH"`, `kubeconfig secret "NAME"`, `kubeconfig in_cluster`.
                Keyword::Kubeconfig if block_kind == Some(FrameKind::Cluster) => {
                    ["secret", "in_cluster"].into_iter().map(|w| Completion::new(w, CompletionKind::Keyword)).collect()
                }
                Keyword::Place => vec![Completion::new("on", CompletionKind::Keyword)],
                Keyword::Set | Keyword::Remove => vec![Completion::new("labels", CompletionKind::Variable)],
                Keyword::When
                | Keyword::Per
                | Keyword::And
                | Keyword::Or
                | Keyword::Not
                | Keyword::Matches
                | Keyword::Namespace => self.expression(frames),
                Keyword::In => {
                    let mut items = self.expression(frames);
                    items.extend(self.enum_values_of_path(before, n - 1, false));
                    items
                }
                _ => self.follow_ups(before, frames),
            },
            Some(Token::Comma) => self.after_comma(before, frames),
            Some(Token::LBrace) if self.import_braces(before, n - 1).is_some() => {
                self.import_braces(before, n - 1).map(|ns| self.importable(&ns)).unwrap_or_default()
            }
            Some(Token::LBrace) => match frames.last().map(|f| f.kind) {
                Some(FrameKind::LabelsMap) => self.label_keys(),
                Some(FrameKind::ValuesMap | FrameKind::DiscoveryMap | FrameKind::ExprMap) => Vec::new(),
                _ => self.statement_keywords(frames),
            },
            Some(Token::RBrace) => self.statement_keywords(frames),
            Some(Token::Assign) => {
                if frames.last().map(|f| f.kind) == Some(FrameKind::LabelsMap) {
                    return self.values_for(before, frames);
                }
                let mut items = self.expression(frames);
                // `set labels.KEY = `
                items.extend(self.enum_values_of_path(before, n - 1, true));
                items
            }
            Some(Token::EqEq | Token::NotEq) => {
                let mut items = self.expression(frames);
                items.extend(self.enum_values_of_path(before, n - 1, true));
                items
            }
            Some(Token::LBracket) => {
                let mut items = self.expression(frames);
                if n >= 2 && before[n - 2].0 == Token::Keyword(Keyword::In) {
                    items.extend(self.enum_values_of_path(before, n - 2, true));
                }
                items
            }
            Some(Token::LParen | Token::Lt | Token::Le | Token::Gt | Token::Ge | Token::Minus) => {
                self.expression(frames)
            }
            // `kubeconfig secret "NAME" key "KEY"`.
            Some(Token::Str(_))
                if n >= 3
                    && before[n - 2].0 == Token::Ident("secret")
                    && before[n - 3].0 == Token::Keyword(Keyword::Kubeconfig) =>
            {
                vec![Completion::new("key", CompletionKind::Keyword)]
            }
            _ => self.follow_ups(before, frames),
        }
    }

    /// What may follow `before` in the statements of a test (docs/language.md §18): the words
    /// of `expect`, the claims and components expectations name, the properties of an
    /// expected instance. `None` where the test's statements are like any other (its claims,
    /// its users).
    fn in_test(&self, before: &Tokens, frames: &[Frame]) -> Option<Vec<Completion>> {
        let n = before.len();
        let at = |back: usize| n.checked_sub(back).map(|i| before[i].0);
        let words = |words: &[&str]| words.iter().map(|w| Completion::new(*w, CompletionKind::Keyword)).collect();
        let expect = Token::Keyword(Keyword::Expect);
        let block_kind = block(frames).map(|f| f.kind);
        if block_kind == Some(FrameKind::Expectation) {
            return match at(1)? {
                Token::Keyword(Keyword::Context) => Some(self.expected_contexts(frames)),
                Token::Keyword(Keyword::Cluster) => Some(self.objects(Kind::Cluster, CompletionKind::Cluster)),
                Token::Keyword(Keyword::Namespace) => Some(Vec::new()),
                _ => None,
            };
        }
        // `expect instance S.C for CLAIM` or `expect no instance S.C for CLAIM`: the index of
        // the word `instance`, when it starts the expectation.
        let instance_word = |i: usize| {
            before[i].0 == Token::Ident("instance")
                && (i >= 1 && before[i - 1].0 == expect
                    || i >= 2 && before[i - 1].0 == Token::Ident("no") && before[i - 2].0 == expect)
        };
        let items = match (at(2), at(1)?) {
            (_, Token::Keyword(Keyword::Expect)) => words(&["claim", "instance", "no", "instances"]),
            (Some(Token::Keyword(Keyword::Expect)), Token::Ident("no")) => words(&["instance"]),
            (Some(Token::Keyword(Keyword::Expect)), Token::Keyword(Keyword::Claim)) => self.test_claims(frames),
            (Some(Token::Keyword(Keyword::Claim)), Token::Ident(_)) if at(3) == Some(expect) => {
                words(&["resolved", "rejected"])
            }
            (_, Token::Ident("rejected")) => words(&["matches"]),
            (_, Token::Ident("instance")) if instance_word(n - 1) => {
                self.objects(Kind::Service, CompletionKind::Service)
            }
            (_, Token::Ident("for")) => self.test_claims(frames),
            (_, Token::Dot) => {
                let (path, start) = path_before(before, n - 1)?;
                let lead = start.checked_sub(1)?;
                if instance_word(lead) {
                    self.services_or_components(&path)
                } else if before[lead].0 == Token::Ident("for")
                    || before[lead].0 == Token::Keyword(Keyword::Claim) && lead >= 1 && before[lead - 1].0 == expect
                {
                    let [qualifier] = path.as_slice() else { return Some(Vec::new()) };
                    let namespace = self.namespace_named(qualifier)?;
                    self.objects_of(&namespace, Kind::Claim, CompletionKind::Claim)
                } else {
                    return None;
                }
            }
            (_, Token::Ident(_)) => {
                // `expect instance S.C ` is followed by `for`.
                let (_, start) = path_before(before, n)?;
                let lead = start.checked_sub(1)?;
                if !instance_word(lead) {
                    return None;
                }
                words(&["for"])
            }
            _ => return None,
        };
        Some(items)
    }

    /// The claims an expectation may name: the test's own, then the policy's.
    fn test_claims(&self, frames: &[Frame]) -> Vec<Completion> {
        let mut items: Vec<Completion> = self
            .test_declared(frames, Keyword::Claim)
            .into_iter()
            .map(|name| Completion::new(name.as_str(), CompletionKind::Claim).detail("claim of this test"))
            .collect();
        items.extend(self.objects(Kind::Claim, CompletionKind::Claim));
        items
    }

    /// The users the test around the cursor declares, as a claim writes them.
    fn test_users(&self, frames: &[Frame]) -> Vec<Completion> {
        self.test_declared(frames, Keyword::User)
            .into_iter()
            .map(|name| Completion::new(format!("\"{name}\""), CompletionKind::User).detail("user of this test"))
            .collect()
    }

    /// The names of the claims or users (`keyword`) the test around the cursor declares, read
    /// from its tokens.
    fn test_declared(&self, frames: &[Frame], keyword: Keyword) -> Vec<SmolStr> {
        let Some(test) = frame_of(frames, FrameKind::Test) else { return Vec::new() };
        let tokens = self.tokens;
        let mut names = Vec::new();
        let mut depth = 0i32;
        for i in test.open + 1..tokens.len() {
            match tokens[i].0 {
                Token::LBrace => depth += 1,
                Token::RBrace if depth == 0 => break,
                Token::RBrace => depth -= 1,
                Token::Keyword(k)
                    if k == keyword && depth == 0 && tokens[i - 1].0 != Token::Keyword(Keyword::Expect) =>
                {
                    match tokens.get(i + 1).map(|(t, _)| *t) {
                        Some(Token::Ident(name)) => names.push(SmolStr::new(name)),
                        Some(Token::Str(lit)) => names.push(SmolStr::new(lit.raw.trim_matches('"'))),
                        _ => {}
                    }
                }
                Token::Keyword(Keyword::Test) if depth == 0 => break,
                _ => {}
            }
        }
        names.sort();
        names.dedup();
        names
    }

    /// After `expect instance PATH.`: the services of a namespace, or the components of a
    /// service.
    fn services_or_components(&self, path: &[&str]) -> Vec<Completion> {
        if let [qualifier] = path
            && let Some(namespace) = self.namespace_named(qualifier)
        {
            return self.objects_of(&namespace, Kind::Service, CompletionKind::Service);
        }
        let Lookup::Found(service, _) = self.scope().resolve(Kind::Service, path) else { return Vec::new() };
        let key = (service.namespace.clone(), service.name.clone());
        self.index
            .components
            .get(&key)
            .into_iter()
            .flatten()
            .map(|name| {
                Completion::new(name.as_str(), CompletionKind::Component).detail(format!("component of {service}"))
            })
            .collect()
    }

    /// The contexts that use the service of the expectation around the cursor.
    fn expected_contexts(&self, frames: &[Frame]) -> Vec<Completion> {
        let Some(expectation) = frame_of(frames, FrameKind::Expectation) else { return Vec::new() };
        let header = &self.tokens[..expectation.open];
        let Some(at_for) = header.iter().rposition(|(t, _)| *t == Token::Ident("for")) else { return Vec::new() };
        let Some((path, _)) = path_before(header, at_for) else { return Vec::new() };
        let Some((_, service)) = path.split_last() else { return Vec::new() };
        let Lookup::Found(service, _) = self.scope().resolve(Kind::Service, service) else { return Vec::new() };
        let key = (service.namespace.clone(), service.name.clone());
        self.index
            .service_contexts
            .get(&key)
            .into_iter()
            .flatten()
            .map(|name| {
                Completion::new(name.as_str(), CompletionKind::Context).detail(format!("context using {service}"))
            })
            .collect()
    }

    /// Keywords that may follow a name in a header: `component NAME uses`, `rule NAME when`.
    fn follow_ups(&self, before: &Tokens, frames: &[Frame]) -> Vec<Completion> {
        let n = before.len();
        let keywords: &[Keyword] = match (n.checked_sub(2).map(|i| before[i].0), before.last().map(|(t, _)| *t)) {
            (Some(Token::Keyword(Keyword::Component)), Some(Token::Ident(_))) => {
                &[Keyword::Uses, Keyword::Chart, Keyword::Manifests]
            }
            (Some(Token::Keyword(Keyword::Rule)), Some(Token::Ident(_))) => &[Keyword::Weight, Keyword::When],
            (Some(Token::Keyword(Keyword::Weight)), Some(Token::Int(_))) => &[Keyword::When],
            (Some(Token::Keyword(Keyword::Context)), Some(Token::Ident(_)))
                if block(frames).map(|f| f.kind) == Some(FrameKind::Contract) =>
            {
                &[Keyword::When]
            }
            (Some(Token::Keyword(Keyword::Namespace)), Some(Token::Ident(_))) if frames.is_empty() => {
                &[Keyword::OwnedBy]
            }
            (Some(Token::Keyword(Keyword::Users)), _) => &[Keyword::From],
            _ => &[],
        };
        keywords.iter().map(|k| Completion::new(k.as_str(), CompletionKind::Keyword)).collect()
    }

    fn statement_keywords(&self, frames: &[Frame]) -> Vec<Completion> {
        use Keyword::*;
        let top = frames.last();
        if top.is_some_and(|f| f.kind == FrameKind::LabelsMap) {
            return self.label_keys();
        }
        let keywords: &[Keyword] = match top.map(|f| f.kind) {
            None => {
                &[Namespace, Import, Label, Service, Contract, Rule, Cluster, Claim, User, Users, Team, Grant, Assert]
            }
            Some(FrameKind::Service) => &[Component],
            Some(FrameKind::Component) => &[Repo, Version, When, After, Values, Discovery],
            Some(FrameKind::Contract) => &[Set, Remove, Context],
            Some(FrameKind::Context) => &[Set, Remove, Allocate, Use],
            Some(FrameKind::Rule) => &[Set, Remove, Reject, Place],
            Some(FrameKind::Cluster) => &[Context, Kubeconfig, Namespace, Labels],
            Some(FrameKind::Claim) => &[User, Team, Contract, Labels],
            Some(FrameKind::User) => &[Team, Groups, Labels],
            Some(FrameKind::Team) => &[Labels],
            Some(FrameKind::Test) => &[Claim, User, Expect],
            Some(FrameKind::Expectation) => &[Context, Cluster, Namespace, Values],
            // `for` is a word with a meaning only here, not a keyword.
            Some(FrameKind::Assert) => {
                return ["for", When.as_str(), Expect.as_str()]
                    .into_iter()
                    .map(|k| Completion::new(k, CompletionKind::Keyword))
                    .collect();
            }
            _ => &[],
        };
        keywords.iter().map(|k| Completion::new(k.as_str(), CompletionKind::Keyword)).collect()
    }

    fn after_dot(&self, before: &Tokens, frames: &[Frame]) -> Vec<Completion> {
        let n = before.len();
        let Some((path, start)) = path_before(before, n - 1) else { return Vec::new() };
        let lead = start.checked_sub(1).map(|i| before[i].0);
        let block_kind = block(frames).map(|f| f.kind);
        let object_kind = match lead {
            Some(Token::Keyword(Keyword::Import)) => Some(None),
            Some(Token::Keyword(Keyword::Uses)) => Some(Some((Kind::Contract, CompletionKind::Contract))),
            Some(Token::Keyword(Keyword::Contract)) if block_kind == Some(FrameKind::Claim) => {
                Some(Some((Kind::Contract, CompletionKind::Contract)))
            }
            Some(Token::Keyword(Keyword::Use)) => Some(Some((Kind::Service, CompletionKind::Service))),
            Some(Token::Keyword(Keyword::On)) => Some(Some((Kind::Cluster, CompletionKind::Cluster))),
            _ => None,
        };
        if let (Some(kind), [qualifier]) = (object_kind, path.as_slice()) {
            let Some(namespace) = self.namespace_named(qualifier) else { return Vec::new() };
            return match kind {
                Some((k, ck)) => self.objects_of(&namespace, k, ck),
                None => self.importable(&namespace),
            };
        }
        let field = |name: &str, detail: &str| Completion::new(name, CompletionKind::Field).detail(detail);
        match path.as_slice() {
            ["labels"] | ["user" | "cluster", "labels"] => self.label_keys(),
            ["user"] => vec![
                field("name", "string"),
                field("team", "string"),
                field("groups", "[string]"),
                field("labels", "the user's labels"),
            ],
            ["claim"] => vec![field("name", "string"), field("namespace", "string"), field("id", "string")],
            ["cluster"] => {
                vec![field("name", "string"), field("namespace", "string"), field("labels", "the cluster's labels")]
            }
            ["instance"] => vec![field("name", "string"), field("id", "string")],
            [component] if self.component_names(frames).iter().any(|c| c == component) => {
                vec![field("discovery", "the values the component publishes")]
            }
            [component, "discovery"] => self.discovery_keys(frames, component),
            [qualifier] => match self.namespace_named(qualifier) {
                Some(namespace) => [
                    (Kind::Contract, CompletionKind::Contract),
                    (Kind::Service, CompletionKind::Service),
                    (Kind::Cluster, CompletionKind::Cluster),
                ]
                .into_iter()
                .flat_map(|(k, ck)| self.objects_of(&namespace, k, ck))
                .collect(),
                None => Vec::new(),
            },
            _ => Vec::new(),
        }
    }

    fn after_comma(&self, before: &Tokens, frames: &[Frame]) -> Vec<Completion> {
        // Back over a list: `after a, b,` or `grant r on a, b,` or `[x, y,` or `f(a,`.
        let mut depth = 0i32;
        for i in (0..before.len()).rev() {
            match before[i].0 {
                Token::RBracket | Token::RParen | Token::RBrace => depth += 1,
                Token::LBracket if depth == 0 => {
                    let mut items = self.expression(frames);
                    if i >= 1 && before[i - 1].0 == Token::Keyword(Keyword::In) {
                        items.extend(self.enum_values_of_path(before, i - 1, true));
                    }
                    return items;
                }
                Token::LParen if depth == 0 => return self.expression(frames),
                Token::LBrace if depth == 0 => {
                    if let Some(namespace) = self.import_braces(before, i) {
                        return self.importable(&namespace);
                    }
                    return match frames.last().map(|f| f.kind) {
                        Some(FrameKind::LabelsMap) => self.label_keys_but_written(before, i),
                        _ => Vec::new(),
                    };
                }
                Token::LBracket | Token::LParen | Token::LBrace => depth -= 1,
                Token::Keyword(Keyword::After) if depth == 0 => return self.components(frames, true),
                Token::Keyword(Keyword::On) if depth == 0 => return self.namespaces(),
                Token::Keyword(Keyword::Per) if depth == 0 => return self.expression(frames),
                // Entries of a map (`a = 1, b = x.y == "z",`) and the items of a list.
                Token::Ident(_)
                | Token::Comma
                | Token::Str(_)
                | Token::Int(_)
                | Token::Dot
                | Token::Assign
                | Token::EqEq
                | Token::NotEq
                | Token::Lt
                | Token::Le
                | Token::Gt
                | Token::Ge
                | Token::Minus => {}
                Token::Keyword(k) if k.is_name_like() && depth == 0 => {}
                _ if depth > 0 => {}
                _ => break,
            }
        }
        Vec::new()
    }

    /// The names an expression may start with here, functions, and the literals.
    fn expression(&self, frames: &[Frame]) -> Vec<Completion> {
        let in_map = |kind| frames.iter().rev().take_while(|f| f.kind != FrameKind::Component).any(|f| f.kind == kind);
        let block_kind = block(frames).map(|f| f.kind);
        let constant = frames.last().is_some_and(|f| f.kind == FrameKind::LabelsMap)
            || matches!(block_kind, Some(FrameKind::Cluster | FrameKind::Claim | FrameKind::User | FrameKind::Team));
        let mut roots: Vec<&str> = Vec::new();
        let mut components = false;
        if !constant {
            match block_kind {
                Some(FrameKind::Component) if in_map(FrameKind::ValuesMap) || in_map(FrameKind::DiscoveryMap) => {
                    roots.extend(["labels", "user", "claim", "cluster", "instance"]);
                    components = true;
                }
                // `allocate per` in a context may read the cluster too.
                Some(FrameKind::Component | FrameKind::Rule | FrameKind::Context) => {
                    roots.extend(["labels", "user", "claim", "cluster"]);
                }
                Some(FrameKind::Contract) => roots.extend(["labels", "user", "claim"]),
                None => roots.extend(["labels", "user", "claim", "cluster"]),
                _ => {}
            }
        }
        let mut items: Vec<Completion> = roots
            .into_iter()
            .map(|root| {
                let detail = match root {
                    "labels" => "the consumer's labels",
                    "user" => "the consumer",
                    "claim" => "the claim being resolved",
                    "cluster" => "the cluster the contract is placed on",
                    _ => "the component instance",
                };
                Completion::new(root, CompletionKind::Variable).detail(detail)
            })
            .collect();
        if components {
            items.extend(self.components(frames, false));
        }
        if !constant {
            for (name, signature) in &self.index.functions {
                let mut item = Completion::new(name.as_str(), CompletionKind::Function);
                item.detail = Some(format!("fn {name}{signature}"));
                item.documentation = self.docs(&Target::Function(name.clone()));
                items.push(item);
            }
            items.push(Completion::new("not", CompletionKind::Keyword));
        }
        items.push(Completion::new("true", CompletionKind::Keyword).detail("bool"));
        items.push(Completion::new("false", CompletionKind::Keyword).detail("bool"));
        items
    }

    /// The value of a `labels { KEY = … }` entry, or the string a label is compared with.
    fn values_for(&self, before: &Tokens, frames: &[Frame]) -> Vec<Completion> {
        let n = before.len();
        match before.last().map(|(t, _)| *t) {
            Some(Token::Assign) if frames.last().is_some_and(|f| f.kind == FrameKind::LabelsMap) => {
                let key = match n.checked_sub(2).map(|i| before[i].0) {
                    Some(Token::Ident(key)) => key.to_string(),
                    Some(Token::Keyword(k)) => k.as_str().to_string(),
                    Some(Token::Str(s)) => s.raw.trim_matches('"').to_string(),
                    _ => return Vec::new(),
                };
                self.label_values(&key)
            }
            Some(Token::Assign | Token::EqEq | Token::NotEq) => self.enum_values_of_path(before, n - 1, true),
            Some(Token::LBracket) if n >= 2 && before[n - 2].0 == Token::Keyword(Keyword::In) => {
                self.enum_values_of_path(before, n - 2, true)
            }
            Some(Token::Comma) => self.after_comma(before, frames),
            _ => Vec::new(),
        }
    }

    /// The values of the label read by the path that ends before `end` (`labels.env ==`).
    fn enum_values_of_path(&self, before: &Tokens, end: usize, _quoted: bool) -> Vec<Completion> {
        let Some((path, _)) = path_before(before, end) else { return Vec::new() };
        match path.as_slice() {
            ["labels", key] | ["user" | "cluster", "labels", key] => self.label_values(key),
            _ => Vec::new(),
        }
    }

    fn label_values(&self, key: &str) -> Vec<Completion> {
        let Lookup::Found(label, _) = self.scope().resolve(Kind::Label, &[key]) else { return Vec::new() };
        let Some(schema) = self.index.labels.get(&(label.namespace.clone(), label.name.clone())) else {
            return Vec::new();
        };
        match &schema.ty {
            Ty::Enum(variants) => variants
                .iter()
                .map(|v| Completion::new(format!("\"{v}\""), CompletionKind::EnumValue).detail(format!("label {key}")))
                .collect(),
            Ty::Bool => vec![
                Completion::new("true", CompletionKind::Keyword).detail("bool"),
                Completion::new("false", CompletionKind::Keyword).detail("bool"),
            ],
            _ => Vec::new(),
        }
    }

    /// Labels visible in this file, with their types.
    fn label_keys(&self) -> Vec<Completion> {
        let mut keys: Vec<(SmolStr, ObjectRef)> = Vec::new();
        for name in self.index.names_in(Kind::Label, self.namespace) {
            keys.push((name.clone(), self.object(Kind::Label, self.namespace, name)));
        }
        for import in self.imports {
            match (&import.members, &import.alias) {
                (None, None) => {
                    for name in self.index.names_in(Kind::Label, &import.namespace) {
                        keys.push((name.clone(), self.object(Kind::Label, &import.namespace, name)));
                    }
                }
                (Some(members), alias) => {
                    for member in members.iter().filter(|m| self.index.has(Kind::Label, &import.namespace, m)) {
                        let visible = match alias {
                            Some(alias) if members.len() == 1 => alias.clone(),
                            _ => member.clone(),
                        };
                        keys.push((visible, self.object(Kind::Label, &import.namespace, member)));
                    }
                }
                (None, Some(_)) => {}
            }
        }
        let with_docs = keys.len() <= MAX_DOCUMENTED;
        keys.into_iter()
            .map(|(visible, label)| {
                let ty =
                    self.index.labels.get(&(label.namespace.clone(), label.name.clone())).map(|s| s.ty.to_string());
                let mut item = Completion::new(visible.as_str(), CompletionKind::Label);
                item.detail = Some(match ty {
                    Some(ty) => format!("{ty} (label {label})"),
                    None => format!("label {label}"),
                });
                if with_docs {
                    item.documentation = self.docs(&Target::Object(label));
                }
                item
            })
            .collect()
    }

    /// The label keys of a `labels { … }` map whose `{` is `before[brace]`, less those already
    /// written in it.
    fn label_keys_but_written(&self, before: &Tokens, brace: usize) -> Vec<Completion> {
        let written: BTreeSet<&str> = before[brace + 1..]
            .windows(2)
            .filter_map(|pair| match (pair[0].0, pair[1].0) {
                (Token::Ident(key), Token::Assign) => Some(key),
                _ => None,
            })
            .collect();
        let mut keys = self.label_keys();
        keys.retain(|key| !written.contains(key.label.as_str()));
        keys
    }

    /// The namespace of `import NS.{` when `before[brace]` is that `{`.
    fn import_braces(&self, before: &Tokens, brace: usize) -> Option<SmolStr> {
        match brace.checked_sub(3).map(|i| &before[i..brace]) {
            Some([(Token::Keyword(Keyword::Import), _), (Token::Ident(namespace), _), (Token::Dot, _)]) => {
                self.namespace_named(namespace)
            }
            _ => None,
        }
    }

    /// What `import NS.NAME` can name: each contract, service and label of `namespace`, once per
    /// name (one import brings every object of that name).
    fn importable(&self, namespace: &str) -> Vec<Completion> {
        let mut items: Vec<Completion> = [
            (Kind::Contract, CompletionKind::Contract),
            (Kind::Service, CompletionKind::Service),
            (Kind::Label, CompletionKind::Label),
        ]
        .into_iter()
        .flat_map(|(k, ck)| self.objects_of(namespace, k, ck))
        .collect();
        let mut seen = BTreeSet::new();
        items.retain(|item| seen.insert(item.label.clone()));
        items
    }

    fn object(&self, kind: Kind, namespace: &str, name: &SmolStr) -> ObjectRef {
        ObjectRef { kind, namespace: namespace.into(), name: name.clone() }
    }

    /// Objects of `kind` this file can name: visible ones by name, others qualified.
    fn objects(&self, kind: Kind, completion: CompletionKind) -> Vec<Completion> {
        let mut items = Vec::new();
        let mut visible: Vec<(SmolStr, ObjectRef)> = Vec::new();
        if kind.is_global() {
            for name in self.index.names_in(kind, "") {
                visible.push((name.clone(), self.object(kind, "", name)));
            }
        } else {
            for name in self.index.names_in(kind, self.namespace) {
                visible.push((name.clone(), self.object(kind, self.namespace, name)));
            }
            for import in self.imports {
                match (&import.members, &import.alias) {
                    (None, None) => {
                        for name in self.index.names_in(kind, &import.namespace) {
                            visible.push((name.clone(), self.object(kind, &import.namespace, name)));
                        }
                    }
                    (Some(members), alias) => {
                        for member in members.iter().filter(|m| self.index.has(kind, &import.namespace, m)) {
                            let name = match alias {
                                Some(alias) if members.len() == 1 => alias.clone(),
                                _ => member.clone(),
                            };
                            visible.push((name, self.object(kind, &import.namespace, member)));
                        }
                    }
                    (None, Some(_)) => {}
                }
            }
            if kind == Kind::Cluster {
                for name in self.index.names_in(kind, SYSTEM_NAMESPACE) {
                    visible.push((name.clone(), self.object(kind, SYSTEM_NAMESPACE, name)));
                }
            }
        }
        let shown: BTreeSet<ObjectRef> = visible.iter().map(|(_, o)| o.clone()).collect();
        let mut named: Vec<(String, ObjectRef)> =
            visible.into_iter().map(|(name, object)| (name.to_string(), object)).collect();
        if !kind.is_global() {
            // Other namespaces' objects, qualified.
            let others = self
                .index
                .objects
                .keys()
                .filter(|o| o.kind == kind && o.namespace != STD_NAMESPACE && !shown.contains(*o))
                .map(|o| (o.to_string(), o.clone()));
            named.extend(others);
        }
        // Doc comments cost a look at each declaration: only for lists a person reads.
        let with_docs = named.len() <= MAX_DOCUMENTED;
        for (label, object) in named {
            let mut item = self.object_item(&label, object.clone(), completion);
            if with_docs {
                item.documentation = self.docs(&Target::Object(object));
            }
            items.push(item);
        }
        items
    }

    fn objects_of(&self, namespace: &str, kind: Kind, completion: CompletionKind) -> Vec<Completion> {
        let names: Vec<&SmolStr> = self.index.names_in(kind, namespace).collect();
        let with_docs = names.len() <= MAX_DOCUMENTED;
        names
            .into_iter()
            .map(|name| {
                let object = self.object(kind, namespace, name);
                let mut item = self.object_item(name, object.clone(), completion);
                if with_docs {
                    item.documentation = self.docs(&Target::Object(object));
                }
                item
            })
            .collect()
    }

    /// An item for an object, without its doc comment.
    fn object_item(&self, label: &str, object: ObjectRef, kind: CompletionKind) -> Completion {
        Completion::new(label, kind).detail(format!("{} {object}", object.kind.as_str()))
    }

    fn users(&self) -> Vec<Completion> {
        self.index
            .names_in(Kind::User, "")
            .map(|name| Completion::new(format!("\"{name}\""), CompletionKind::User).detail("user"))
            .collect()
    }

    fn namespaces(&self) -> Vec<Completion> {
        self.index
            .namespaces
            .iter()
            .filter(|(name, _)| name.as_str() != STD_NAMESPACE)
            .map(|(name, info)| {
                let detail = match &info.owner {
                    Some(owner) => format!("namespace owned by {owner}"),
                    None => "namespace".to_string(),
                };
                Completion::new(name.as_str(), CompletionKind::Namespace).detail(detail)
            })
            .collect()
    }

    /// The namespace a qualifier names (directly, or as an import alias).
    fn namespace_named(&self, qualifier: &str) -> Option<SmolStr> {
        let aliased =
            self.imports.iter().find(|import| import.members.is_none() && import.alias.as_deref() == Some(qualifier));
        match aliased {
            Some(import) => Some(import.namespace.clone()),
            None => self.index.namespaces.contains_key(qualifier).then(|| SmolStr::new(qualifier)),
        }
    }

    /// The service around the cursor: its frame (whose `{` indexes the file's tokens).
    fn service_frame<'f, 's>(&self, frames: &'f [Frame<'s>]) -> Option<&'f Frame<'s>> {
        frame_of(frames, FrameKind::Service)
    }

    /// Components of the service around the cursor, read from its tokens.
    fn component_names(&self, frames: &[Frame]) -> Vec<SmolStr> {
        let Some(service) = self.service_frame(frames) else { return Vec::new() };
        let mut names = Vec::new();
        let mut depth = 0i32;
        let tokens = self.tokens;
        for i in service.open + 1..tokens.len() {
            match tokens[i].0 {
                Token::LBrace => depth += 1,
                Token::RBrace if depth == 0 => break,
                Token::RBrace => depth -= 1,
                Token::Keyword(Keyword::Component) if depth == 0 => {
                    if let Some((Token::Ident(name), _)) = tokens.get(i + 1) {
                        names.push(SmolStr::new(name));
                    }
                }
                _ if depth == 0 && starts_item(tokens, i) => break,
                _ => {}
            }
        }
        names
    }

    fn components(&self, frames: &[Frame], exclude_current: bool) -> Vec<Completion> {
        let current = frame_of(frames, FrameKind::Component).and_then(|f| f.name);
        let service = self.service_frame(frames).and_then(|f| f.name).unwrap_or_default();
        self.component_names(frames)
            .into_iter()
            .filter(|name| !(exclude_current && Some(name.as_str()) == current))
            .map(|name| {
                Completion::new(name.as_str(), CompletionKind::Component).detail(format!("component of {service}"))
            })
            .collect()
    }

    /// What component `component` of the service around the cursor publishes.
    fn discovery_keys(&self, frames: &[Frame], component: &str) -> Vec<Completion> {
        let Some(service) = self.service_frame(frames).and_then(|f| f.name) else { return Vec::new() };
        let parse = parse_file(self.db, self.file);
        let found = parse.file.items.iter().find_map(|item| match &item.kind {
            ItemKind::Service(s) if s.name.text == service => s.body.stmts.iter().find_map(|stmt| match &stmt.node {
                ServiceStmt::Component(c) if c.name.text == component => Some(c),
                _ => None,
            }),
            _ => None,
        });
        let Some(found) = found else { return Vec::new() };
        let mut keys: Vec<SmolStr> = published(found);
        if let ComponentSource::Uses(path) = &found.source.node {
            let texts: Vec<&str> = path.segments.iter().map(|s| s.text.as_str()).collect();
            if let Lookup::Found(contract, _) = self.scope().resolve(Kind::Contract, &texts) {
                let services = self.index.contract_services.get(&(contract.namespace.clone(), contract.name.clone()));
                let mut common: Option<BTreeSet<SmolStr>> = None;
                for service in services.into_iter().flatten() {
                    let published: BTreeSet<SmolStr> = self
                        .index
                        .published
                        .get(&(contract.namespace.clone(), service.clone()))
                        .map(|k| k.iter().cloned().collect())
                        .unwrap_or_default();
                    common = Some(match common {
                        None => published,
                        Some(before) => before.intersection(&published).cloned().collect(),
                    });
                }
                keys.extend(common.unwrap_or_default());
            }
        }
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|key| {
                Completion::new(key.as_str(), CompletionKind::DiscoveryKey).detail(format!("published by {component}"))
            })
            .collect()
    }
}
