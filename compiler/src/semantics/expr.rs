//! Type checking of expressions and interpolated strings (docs/language.md §13, §14).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use aptc_core::ir::{SECRET_KEY, Value};

use crate::diagnostics::{Diagnostic, codes};
use crate::source::FileId;
use crate::syntax::ast::*;

use super::index::{Kind, ObjectRef, map_key_text};
use super::scope::{Lookup, Scope, did_you_mean};
use super::types::Ty;

/// Which names an expression may read where it stands (the table of §13.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Roots {
    pub labels: bool,
    pub user: bool,
    pub claim: bool,
    pub cluster: bool,
    pub instance: bool,
    pub discovery: bool,
}

impl Roots {
    /// Label defaults and the `labels` of claims, users, teams and clusters: constants only.
    pub const CONSTANT: Roots =
        Roots { labels: false, user: false, claim: false, cluster: false, instance: false, discovery: false };
    /// Contract `set`, context `when` and `set`.
    pub const CONTRACT: Roots = Roots { labels: true, user: true, claim: true, ..Roots::CONSTANT };
    /// Rules, `allocate per`, component `when`.
    pub const PLACED: Roots = Roots { cluster: true, ..Roots::CONTRACT };
    /// `values` and `discovery` of a component.
    pub const COMPONENT: Roots = Roots { instance: true, discovery: true, ..Roots::PLACED };
    /// A grant's criteria.
    pub const GRANT: Roots = Roots { user: true, ..Roots::CONSTANT };
}

/// What a component of the service being checked publishes, for `C.discovery.KEY`.
pub struct ComponentInfo {
    /// Published keys with their types; `None` when unknown (a contract nothing resolves).
    pub discovery: Option<HashMap<SmolStr, Ty>>,
}

/// The components of the service around an expression, and which one is reading.
pub struct Components<'a> {
    pub all: &'a HashMap<SmolStr, ComponentInfo>,
    /// The reading component and the components it depends on (transitively).
    pub current: &'a SmolStr,
    pub dependencies: &'a HashSet<SmolStr>,
    /// In the `discovery` map of a `uses` component, which may re-export what it receives.
    pub reads_received: bool,
    /// In the component's manifest templates, its `values` entries with their types, which
    /// they read as `values.KEY`; `None` everywhere else.
    pub values: Option<&'a HashMap<SmolStr, Ty>>,
    /// The parser skipped a statement of the service (a misspelt `component`, say): a name that
    /// is not found may be a component it lost, so it is not reported again.
    pub incomplete: bool,
}

/// Where an expression stands: the names it may read, and a phrase for messages.
pub struct Env<'a> {
    pub roots: Roots,
    pub place: &'static str,
    pub components: Option<&'a Components<'a>>,
}

/// The state of checking one file: where to report, and what the file used.
pub struct Checker<'a> {
    pub file: FileId,
    pub scope: Scope<'a>,
    pub out: Vec<Diagnostic>,
    /// Labels read or written, for the unused-object lint.
    pub used: BTreeSet<ObjectRef>,
    /// Labels read as `labels.KEY` outside `default(…)`'s value, each at its first such read: a
    /// read that fails the claim when nothing set the label (the never-set lint).
    pub label_reads: BTreeMap<ObjectRef, Span>,
    /// How many `default(…)` values the checker is inside: reads there are optional.
    pub optional_reads: u32,
    /// Imports (by position) that resolved at least one name.
    pub used_imports: HashSet<usize>,
    /// Each label key this file wrote that resolved, with its type: a file of claims writes
    /// the same few keys thousands of times, and all a key's later uses need is this.
    pub labels_found: HashMap<SmolStr, (ObjectRef, Ty)>,
}

impl Checker<'_> {
    pub fn report(&mut self, diagnostic: Diagnostic) {
        self.out.push(diagnostic);
    }

    /// Resolves a label key written in this file, reporting what goes wrong.
    pub fn label(&mut self, key: &Ident) -> Option<(ObjectRef, Ty)> {
        if let Some(found) = self.labels_found.get(&key.text) {
            return Some(found.clone());
        }
        match self.scope.resolve(Kind::Label, &[key.text.as_str()]) {
            Lookup::Found(label, via) => {
                via.map(|i| self.used_imports.insert(i));
                let ty =
                    self.scope.index.labels.get(&(label.namespace.clone(), label.name.clone())).map(|s| s.ty.clone());
                self.used.insert(label.clone());
                let found = (label, ty.unwrap_or(Ty::Unknown));
                self.labels_found.insert(key.text.clone(), found.clone());
                Some(found)
            }
            Lookup::Ambiguous(candidates, via) => {
                self.used_imports.extend(via);
                self.ambiguous(key.span, &key.text, &candidates);
                None
            }
            Lookup::NotFound { suggestions } | Lookup::UnknownNamespace { suggestions, .. } => {
                // Qualified suggestions are labels of other namespaces: they need an import.
                let (elsewhere, close): (Vec<String>, Vec<String>) =
                    suggestions.into_iter().partition(|s| s.contains('.'));
                let help = match (did_you_mean(&close), elsewhere.first()) {
                    (Some(close), _) => close,
                    (None, Some(qualified)) => {
                        let namespace = qualified.split('.').next().unwrap_or_default();
                        format!(
                            "namespace `{namespace}` declares `{}`: add `import {namespace}` (or `import {qualified}`) to this file",
                            key.text
                        )
                    }
                    (None, None) => {
                        format!("declare it: `label {}: string`, or import the namespace that declares it", key.text)
                    }
                };
                self.report(
                    Diagnostic::new(
                        codes::UNDECLARED_LABEL,
                        self.file,
                        key.span,
                        format!("no label `{}` is visible here", key.text),
                    )
                    .with_primary_message("undeclared label")
                    .with_help(help),
                );
                None
            }
            Lookup::TooLong => None,
        }
    }

    pub fn ambiguous(&mut self, span: Span, name: &str, candidates: &[ObjectRef]) {
        let listed: Vec<String> = candidates.iter().map(|c| format!("`{c}`")).collect();
        let help = match candidates.first() {
            Some(first) if first.kind == Kind::Label => {
                format!(
                    "import the one you mean by name, e.g. `import {first}`: a named import wins over `import {}`",
                    first.namespace
                )
            }
            _ => "qualify it with its namespace, e.g. `ns.name`, or remove one of the imports".to_string(),
        };
        self.report(
            Diagnostic::new(
                codes::AMBIGUOUS_NAME,
                self.file,
                span,
                format!("`{name}` is ambiguous: it could be {}", listed.join(" or ")),
            )
            .with_primary_message("ambiguous name")
            .with_help(help),
        );
    }

    /// Checks `expr` and returns its type. A secret here is an error: see [`Checker::value`].
    pub fn expr(&mut self, expr: &Expr, env: &Env) -> Ty {
        self.check(expr, env, false)
    }

    /// Checks a value of a component's `values` map: the one place a secret may stand, as the
    /// value itself or inside list and map literals (docs/language.md §5.5).
    pub fn value(&mut self, expr: &Expr, env: &Env) -> Ty {
        self.check(expr, env, true)
    }

    /// `expr` and `value`: `secrets` says whether a secret may be the result.
    fn check(&mut self, expr: &Expr, env: &Env, secrets: bool) -> Ty {
        match &expr.kind {
            ExprKind::Int(_) => Ty::Int,
            ExprKind::Bool(_) => Ty::Bool,
            ExprKind::Str(lit) => {
                if env.roots == Roots::CONSTANT {
                    self.plain(lit, env.place);
                } else {
                    self.string(lit, env);
                }
                Ty::String
            }
            ExprKind::List(items) => self.list(items, env, secrets),
            ExprKind::Map(map) => {
                for entry in &map.entries {
                    if let MapKey::Str(key) = &entry.key {
                        self.map_key(key, env);
                    }
                    self.check(&entry.value, env, secrets);
                }
                Ty::Map
            }
            ExprKind::Path(path) => self.path(path, env),
            ExprKind::Call { func, args } => {
                let ty = self.call(func, args, expr.span, env);
                if ty.holds_secret() && !secrets {
                    self.report(
                        Diagnostic::new(
                            codes::SECRET_NOT_ALLOWED,
                            self.file,
                            expr.span,
                            "a secret can only be a value in a component's `values`".to_string(),
                        )
                        .with_primary_message("a secret cannot be used here")
                        .with_help(
                            "a secret may only be a value of a component's `values` map (or inside a list or map \
there): it is read when the instance is deployed, so it cannot be compared, interpolated, converted or passed to \
another function"
                                .to_string(),
                        ),
                    );
                    return Ty::Unknown;
                }
                ty
            }
            ExprKind::Unary { op: UnaryOp::Not, expr: inner } => {
                self.condition(inner, env, "the operand of `not`");
                Ty::Bool
            }
            ExprKind::Unary { op: UnaryOp::Neg, expr: inner } => {
                self.expect(inner, env, &Ty::Int, "the operand of `-`");
                Ty::Int
            }
            ExprKind::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs, env),
            ExprKind::Paren(inner) => self.check(inner, env, secrets),
            ExprKind::Error => Ty::Unknown,
        }
    }

    /// Checks that `expr` is a `bool` (criteria, operands of `and`, `or`, `not`).
    pub fn condition(&mut self, expr: &Expr, env: &Env, what: &str) {
        let ty = self.expr(expr, env);
        if !ty.fits(&Ty::Bool) {
            self.report(
                Diagnostic::new(
                    codes::CONDITION_NOT_BOOL,
                    self.file,
                    expr.span,
                    format!("{what} must be a `bool`, but this is `{ty}`"),
                )
                .with_primary_message(format!("`{ty}`"))
                .with_help(match ty {
                    Ty::Int => "compare it, e.g. `labels.replicas > 0`; there is no truthiness".to_string(),
                    _ => "compare it with `==`, or test membership with `in`".to_string(),
                }),
            );
        }
    }

    /// Checks that `expr` has a type that fits `want` (an enum accepts only its own values).
    ///
    /// `what` names the value in messages; it is only formatted when there is one to give.
    pub fn expect(&mut self, expr: &Expr, env: &Env, want: &Ty, what: impl std::fmt::Display + Copy) {
        if let (Ty::Enum(variants), Some(text)) = (want, constant_string(expr)) {
            if !variants.iter().any(|v| *v == text) {
                self.not_a_variant(expr.span, &text, variants, what);
            }
            return;
        }
        if let (Ty::List(inner), ExprKind::List(items)) = (want, &expr.kind) {
            for item in items {
                self.expect(item, env, inner, what);
            }
            return;
        }
        let ty = self.expr(expr, env);
        if !ty.fits(want) {
            self.report(
                Diagnostic::new(
                    codes::TYPE_MISMATCH,
                    self.file,
                    expr.span,
                    format!("{what} must be `{want}`, but this is `{ty}`"),
                )
                .with_primary_message(format!("expected `{want}`"))
                .with_help(conversion_help(&ty, want)),
            );
        }
    }

    pub fn not_a_variant(&mut self, span: Span, text: &str, variants: &[SmolStr], what: impl std::fmt::Display) {
        let suggestion = super::scope::closest(text, variants.iter());
        let listed: Vec<String> = variants.iter().map(|v| format!("\"{v}\"")).collect();
        self.report(
            Diagnostic::new(codes::NOT_AN_ENUM_VALUE, self.file, span, format!("\"{text}\" is not a value of {what}"))
                .with_primary_message(format!("not one of {}", listed.join(", ")))
                .with_help(
                    did_you_mean(&suggestion.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>()).unwrap_or_else(
                        || format!("use one of {}, or add \"{text}\" to the label's type", listed.join(", ")),
                    ),
                ),
        );
    }

    /// Checks a quoted key of a map literal or a `values` map: its interpolations, and that it is
    /// not the key reserved for references to secrets.
    pub fn map_key(&mut self, key: &StrLit, env: &Env) {
        self.string(key, env);
        if key.as_plain().as_deref() == Some(SECRET_KEY) {
            self.report(
                Diagnostic::new(
                    codes::SECRET_NOT_ALLOWED,
                    self.file,
                    key.span,
                    format!("the map key `{SECRET_KEY}` is reserved for references to secrets"),
                )
                .with_primary_message("reserved key")
                .with_help(
                    "refer to a secret with `secret_env(NAME)`, `secret_file(PATH)` or `secret_k8s(NAME, KEY)`; otherwise rename the key"
                        .to_string(),
                ),
            );
        }
    }

    /// Checks the interpolations of a string.
    pub fn string(&mut self, lit: &StrLit, env: &Env) {
        self.interpolations(&lit.parts, env);
    }

    /// Checks interpolated expressions (of a string or a manifest template): each must have a
    /// type that has a text (§14.2).
    pub fn interpolations(&mut self, parts: &[StrPart], env: &Env) {
        for part in parts {
            if let StrPart::Interp(inner) = part {
                let ty = self.expr(inner, env);
                // A manifest template writes a secret value as a reference that the deploy resolves.
                let template_secret = ty == Ty::Secret && env.components.is_some_and(|c| c.values.is_some());
                if !ty.is_scalar() && !template_secret {
                    self.report(
                        Diagnostic::new(
                            codes::TYPE_MISMATCH,
                            self.file,
                            inner.span,
                            format!("a `{ty}` cannot be interpolated into a string"),
                        )
                        .with_primary_message(format!("`{ty}`"))
                        .with_help(
                            "interpolate a string, number or bool; for a list use `join(list, \",\")`".to_string(),
                        ),
                    );
                }
            }
        }
    }

    /// Reports an interpolation in a string that must be plain.
    pub fn plain(&mut self, lit: &StrLit, what: &str) -> Option<String> {
        let plain = lit.as_plain();
        if plain.is_none() {
            self.report(
                Diagnostic::new(
                    codes::INTERPOLATION_NOT_ALLOWED,
                    self.file,
                    lit.span,
                    format!("{what} must be a plain string"),
                )
                .with_primary_message("interpolation is not allowed here")
                .with_help(
                    "it is read before any consumer exists; write the value itself (escape `$` as `\\$`)".to_string(),
                ),
            );
        }
        plain
    }

    fn list(&mut self, items: &[Expr], env: &Env, secrets: bool) -> Ty {
        let mut element: Option<Ty> = None;
        for item in items {
            let ty = self.check(item, env, secrets);
            match &element {
                None => element = Some(ty),
                Some(first) if first.comparable(&ty) => {
                    if *first == Ty::Unknown || (first.is_stringy() && ty == Ty::String) {
                        element = Some(ty);
                    }
                }
                Some(first) => {
                    let first = first.clone();
                    self.report(
                        Diagnostic::new(
                            codes::TYPE_MISMATCH,
                            self.file,
                            item.span,
                            format!("list elements must have one type: `{first}` and `{ty}`"),
                        )
                        .with_primary_message(format!("`{ty}`"))
                        .with_help("a list holds values of one type; convert with `to_string` or `to_int`".to_string()),
                    );
                }
            }
        }
        match element {
            None => Ty::EmptyList,
            Some(Ty::Enum(_)) => Ty::List(Box::new(Ty::String)),
            Some(ty) => Ty::List(Box::new(ty)),
        }
    }

    fn binary(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr, env: &Env) -> Ty {
        match op {
            BinaryOp::And | BinaryOp::Or => {
                let what = format!("an operand of `{}`", op.as_str());
                self.condition(lhs, env, &what);
                self.condition(rhs, env, &what);
            }
            BinaryOp::Eq | BinaryOp::Ne => {
                let (left, right) = (self.expr(lhs, env), self.expr(rhs, env));
                if !self.enum_against_constant(&left, lhs, rhs)
                    && !self.enum_against_constant(&right, rhs, lhs)
                    && !left.comparable(&right)
                {
                    self.mismatch_in_comparison(op, lhs.span.to(rhs.span), &left, &right);
                }
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                let (left, right) = (self.expr(lhs, env), self.expr(rhs, env));
                let ordered = |t: &Ty| matches!(t, Ty::Int | Ty::String | Ty::Enum(_) | Ty::Any | Ty::Unknown);
                let both_ints = left.fits(&Ty::Int) && right.fits(&Ty::Int);
                let both_strings = left.fits(&Ty::String) && right.fits(&Ty::String);
                if !(ordered(&left) && ordered(&right) && (both_ints || both_strings)) {
                    self.mismatch_in_comparison(op, lhs.span.to(rhs.span), &left, &right);
                }
            }
            BinaryOp::In | BinaryOp::NotIn => {
                let left = self.expr(lhs, env);
                if let (Ty::Enum(variants), ExprKind::List(items)) = (&left, &rhs.kind) {
                    let variants = variants.clone();
                    for item in items {
                        match constant_string(item) {
                            Some(text) if !variants.contains(&SmolStr::new(&text)) => {
                                self.not_a_variant(item.span, &text, &variants, describe(lhs))
                            }
                            Some(_) => {}
                            None => {
                                self.expect(item, env, &Ty::String, "an element of the list");
                            }
                        }
                    }
                    return Ty::Bool;
                }
                let right = self.expr(rhs, env);
                match &right {
                    Ty::List(element) if left.comparable(element) => {}
                    Ty::EmptyList | Ty::Any | Ty::Unknown => {}
                    _ => {
                        self.report(
                            Diagnostic::new(
                                codes::TYPE_MISMATCH,
                                self.file,
                                rhs.span,
                                format!(
                                    "`{}` needs a list of `{left}` on its right, but this is `{right}`",
                                    op.as_str()
                                ),
                            )
                            .with_primary_message(format!("`{right}`"))
                            .with_help(
                                "write a list, e.g. `x in [\"a\", \"b\"]`; for substrings use `contains(s, part)`"
                                    .to_string(),
                            ),
                        );
                    }
                }
            }
            BinaryOp::Matches => {
                self.expect(lhs, env, &Ty::String, "the left side of `matches`");
                self.expect(rhs, env, &Ty::String, "a regular expression");
                if let Some(pattern) = constant_string(rhs) {
                    self.regex(&pattern, rhs.span);
                }
            }
        }
        Ty::Bool
    }

    /// Reports a regular expression (the text of the literal at `span`) that does not parse.
    pub fn regex(&mut self, pattern: &str, span: Span) {
        let Err(error) = regex_syntax::Parser::new().parse(pattern) else { return };
        let detail = error.to_string();
        let last = detail.lines().last().unwrap_or("invalid").trim();
        let reason = last.strip_prefix("error:").unwrap_or(last).trim().to_string();
        self.report(
            Diagnostic::new(codes::INVALID_REGEX, self.file, span, format!("invalid regular expression: {reason}"))
                .with_primary_message("does not parse as a regular expression")
                .with_help("the syntax is that of Rust's regex crate; escape `\\` in strings as `\\\\`".to_string()),
        );
    }

    /// For `enum == "literal"`: reports a literal outside the enum. True when it was such a pair.
    fn enum_against_constant(&mut self, ty: &Ty, side: &Expr, other: &Expr) -> bool {
        let (Ty::Enum(variants), Some(text)) = (ty, constant_string(other)) else { return false };
        if !variants.iter().any(|v| *v == text) {
            let variants = variants.clone();
            self.not_a_variant(other.span, &text, &variants, describe(side));
        }
        true
    }

    fn mismatch_in_comparison(&mut self, op: BinaryOp, span: Span, left: &Ty, right: &Ty) {
        let membership =
            matches!((left, right), (Ty::List(element), other) | (other, Ty::List(element)) if other.fits(element));
        let help = if membership {
            "to test whether a list holds a value, write `value in list` (e.g. `\"dev\" in user.groups`)".to_string()
        } else {
            conversion_help(right, left)
        };
        self.report(
            Diagnostic::new(
                codes::TYPE_MISMATCH,
                self.file,
                span,
                format!("`{}` cannot compare `{left}` with `{right}`", op.as_str()),
            )
            .with_primary_message(format!("`{left}` {} `{right}`", op.as_str()))
            .with_help(help),
        );
    }

    fn call(&mut self, func: &Ident, args: &[Expr], span: Span, env: &Env) -> Ty {
        if env.roots == Roots::CONSTANT {
            self.report(
                Diagnostic::new(codes::NOT_IN_SCOPE_HERE, self.file, span, format!("{} must be a constant", env.place))
                    .with_primary_message("a function call")
                    .with_help("write the value itself".to_string()),
            );
            return Ty::Unknown;
        }
        let Some(signature) = self.scope.index.functions.get(&func.text).cloned() else {
            let names = self.scope.index.functions.keys();
            let help = did_you_mean(&super::scope::closest(&func.text, names))
                .unwrap_or_else(|| "the functions are listed in stdlib/prelude.apt".to_string());
            self.report(
                Diagnostic::new(codes::BAD_CALL, self.file, func.span, format!("there is no function `{}`", func.text))
                    .with_primary_message("unknown function")
                    .with_help(help),
            );
            for arg in args {
                self.expr(arg, env);
            }
            return Ty::Unknown;
        };
        if args.len() != signature.params.len() {
            self.report(
                Diagnostic::new(
                    codes::BAD_CALL,
                    self.file,
                    span,
                    format!(
                        "`{}` takes {} but {} {} given",
                        func.text,
                        plural(signature.params.len(), "argument"),
                        args.len(),
                        if args.len() == 1 { "was" } else { "were" }
                    ),
                )
                .with_primary_message(format!("{}{signature}", func.text))
                .with_help(format!("its signature is `{}{}`", func.text, signature)),
            );
        }
        let mut first = Ty::Unknown;
        for (i, arg) in args.iter().enumerate() {
            match signature.params.get(i) {
                Some((name, ty)) => {
                    let what = format!("argument `{name}` of `{}`", func.text);
                    if i == 0 {
                        let optional = func.text == "default";
                        self.optional_reads += u32::from(optional);
                        first = self.expr(arg, env);
                        self.optional_reads -= u32::from(optional);
                        if !first.fits(ty) {
                            self.report(
                                Diagnostic::new(
                                    codes::TYPE_MISMATCH,
                                    self.file,
                                    arg.span,
                                    format!("{what} must be `{ty}`, but this is `{first}`"),
                                )
                                .with_primary_message(format!("expected `{ty}`"))
                                .with_help(conversion_help(&first, ty)),
                            );
                        }
                    } else if func.text == "default" {
                        // The fallback stands in for the value: it must have its type.
                        self.expect(arg, env, &first, &what);
                    } else {
                        self.expect(arg, env, ty, &what);
                    }
                }
                None => {
                    self.expr(arg, env);
                }
            }
        }
        // `default` returns the type of its value.
        if func.text == "default" { first } else { signature.ret }
    }

    fn path(&mut self, path: &Path, env: &Env) -> Ty {
        let segments: Vec<&str> = path.segments.iter().map(|s| s.text.as_str()).collect();
        let Some(root) = path.segments.first() else { return Ty::Unknown };
        let allowed = |ok: bool, checker: &mut Self, what: &str| {
            if !ok {
                let place = env.place;
                checker.report(
                    Diagnostic::new(
                        codes::NOT_IN_SCOPE_HERE,
                        checker.file,
                        path.span,
                        format!("`{what}` is not available in {place}"),
                    )
                    .with_primary_message(format!("`{what}` is not in scope here"))
                    .with_help(scope_help(what, env.roots)),
                );
            }
            ok
        };
        // Reports the first segment after the root that names no field (or a path that stops
        // short of one), given the valid shapes (`*` = any key).
        let wrong_field = |checker: &mut Self, shapes: &[&[&str]], fields: &str| {
            let rest = &segments[1..];
            let fits = |n: usize| {
                shapes.iter().any(|shape| {
                    shape.len() >= n && shape[..n].iter().zip(rest).all(|(want, got)| *want == "*" || want == got)
                })
            };
            let at = (1..=rest.len()).find(|&n| !fits(n)).map_or(segments.len(), |n| n);
            let diagnostic = match path.segments.get(at) {
                Some(wrong) => Diagnostic::new(
                    codes::UNKNOWN_NAME,
                    checker.file,
                    wrong.span,
                    format!("`{}` has no field `{}`", segments[..at].join("."), wrong.text),
                )
                .with_primary_message("unknown field"),
                None => Diagnostic::new(
                    codes::UNKNOWN_NAME,
                    checker.file,
                    path.span,
                    format!("`{}` needs a field", segments.join(".")),
                )
                .with_primary_message("incomplete"),
            };
            checker.report(diagnostic.with_help(format!("the fields are {fields}")));
            Ty::Unknown
        };
        match segments.as_slice() {
            ["labels", ..] => {
                if !allowed(env.roots.labels, self, "labels") {
                    return Ty::Unknown;
                }
                match path.segments.get(1) {
                    Some(key) if segments.len() == 2 => match self.label(key) {
                        Some((label, ty)) => {
                            if self.optional_reads == 0 {
                                self.label_reads.entry(label).or_insert(key.span);
                            }
                            ty
                        }
                        None => Ty::Unknown,
                    },
                    _ => wrong_field(self, &[&["*"]], "the declared labels, as `labels.KEY`"),
                }
            }
            ["user", rest @ ..] => {
                if !allowed(env.roots.user, self, "user") {
                    return Ty::Unknown;
                }
                match rest {
                    ["name"] | ["team"] => Ty::String,
                    ["groups"] => Ty::List(Box::new(Ty::String)),
                    ["labels", _] => self.label(&path.segments[2]).map_or(Ty::Unknown, |(_, ty)| ty),
                    _ => wrong_field(
                        self,
                        &[&["name"], &["team"], &["groups"], &["labels", "*"]],
                        "`name`, `team`, `groups` and `labels.KEY`",
                    ),
                }
            }
            ["claim", rest @ ..] => {
                if !allowed(env.roots.claim, self, "claim") {
                    return Ty::Unknown;
                }
                match rest {
                    ["name"] | ["namespace"] | ["id"] => Ty::String,
                    _ => wrong_field(self, &[&["name"], &["namespace"], &["id"]], "`name`, `namespace` and `id`"),
                }
            }
            ["cluster", rest @ ..] => {
                if !allowed(env.roots.cluster, self, "cluster") {
                    return Ty::Unknown;
                }
                match rest {
                    ["name"] | ["namespace"] => Ty::String,
                    ["labels", _] => self.label(&path.segments[2]).map_or(Ty::Unknown, |(_, ty)| ty),
                    _ => wrong_field(
                        self,
                        &[&["name"], &["namespace"], &["labels", "*"]],
                        "`name`, `namespace` and `labels.KEY`",
                    ),
                }
            }
            ["instance", rest @ ..] => {
                if !allowed(env.roots.instance, self, "instance") {
                    return Ty::Unknown;
                }
                match rest {
                    ["name"] | ["id"] => Ty::String,
                    _ => wrong_field(self, &[&["name"], &["id"]], "`name` and `id`"),
                }
            }
            [component, "discovery", key] if env.components.is_some_and(|c| c.all.contains_key(*component)) => {
                self.discovery(path, component, key, env)
            }
            ["values", rest @ ..] if env.components.is_some_and(|c| c.values.is_some()) => match rest {
                [key] => match env.components.and_then(|c| c.values?.get(*key)) {
                    Some(ty) => ty.clone(),
                    None => {
                        let keys: Vec<&SmolStr> =
                            env.components.and_then(|c| c.values).into_iter().flat_map(|v| v.keys()).collect();
                        let mut listed: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                        listed.sort();
                        let help =
                            did_you_mean(&super::scope::closest(key, keys.iter().copied())).unwrap_or_else(|| {
                                if listed.is_empty() {
                                    format!("add `values {{ {key} = … }}` to the component")
                                } else {
                                    format!("the component's values are {}", listed.join(", "))
                                }
                            });
                        self.report(
                            Diagnostic::new(
                                codes::UNKNOWN_NAME,
                                self.file,
                                path.segments[1].span,
                                format!("the component has no value `{key}`"),
                            )
                            .with_primary_message("not in the component's `values`")
                            .with_help(help),
                        );
                        Ty::Unknown
                    }
                },
                _ => wrong_field(self, &[&["*"]], "the component's values, as `values.KEY`"),
            },
            [name, ..] => {
                let mut roots: Vec<&str> = Vec::new();
                let r = env.roots;
                for (ok, root) in [
                    (r.labels, "labels"),
                    (r.user, "user"),
                    (r.claim, "claim"),
                    (r.cluster, "cluster"),
                    (r.instance, "instance"),
                ] {
                    if ok {
                        roots.push(root);
                    }
                }
                let mut message = format!("unknown name `{name}`");
                let mut help = if roots.is_empty() {
                    format!("{} must be a constant: a string, number, bool, list or map", env.place)
                } else {
                    let listed: Vec<String> = roots.iter().map(|r| format!("`{r}`")).collect();
                    format!("names here start with {}", listed.join(", "))
                };
                if let Some(components) = env.components {
                    if components.incomplete && !roots.is_empty() && !components.all.contains_key(*name) {
                        // Perhaps a component the parser skipped: its error is the one to fix.
                        return Ty::Unknown;
                    }
                    if components.all.contains_key(*name) {
                        message = format!("`{}` is not a discovery value", segments.join("."));
                        help = format!("read a component's discovery as `{name}.discovery.KEY`");
                    } else {
                        help.push_str(" or a component of this service (`C.discovery.KEY`)");
                    }
                }
                if roots.is_empty() {
                    self.report(
                        Diagnostic::new(
                            codes::NOT_IN_SCOPE_HERE,
                            self.file,
                            path.span,
                            format!("{} must be a constant", env.place),
                        )
                        .with_primary_message("a name")
                        .with_help(help),
                    );
                } else {
                    self.report(
                        Diagnostic::new(codes::UNKNOWN_NAME, self.file, root.span, message)
                            .with_primary_message("not in scope")
                            .with_help(help),
                    );
                }
                Ty::Unknown
            }
            [] => Ty::Unknown,
        }
    }

    fn discovery(&mut self, path: &Path, component: &str, key: &str, env: &Env) -> Ty {
        let Some(components) = env.components else { return Ty::Unknown };
        if !env.roots.discovery {
            self.report(
                Diagnostic::new(
                    codes::NOT_IN_SCOPE_HERE,
                    self.file,
                    path.span,
                    format!("discovery values are not available in {}", env.place),
                )
                .with_primary_message("not in scope here")
                .with_help("read discovery values in `values` or `discovery` of a component".to_string()),
            );
            return Ty::Unknown;
        }
        let own = component == components.current.as_str();
        if (own && !components.reads_received) || (!own && !components.dependencies.contains(component)) {
            let current = components.current.clone();
            let message = if component == current.as_str() {
                format!("component `{current}` reads its own discovery")
            } else {
                format!(
                    "component `{current}` reads the discovery of `{component}`, which is not one of its dependencies"
                )
            };
            self.report(
                Diagnostic::new(codes::DISCOVERY_NOT_A_DEPENDENCY, self.file, path.span, message)
                    .with_primary_message(format!("`{component}` is not resolved before `{current}`"))
                    .with_help(if component == current.as_str() {
                        "a component cannot read what it publishes; use the value itself".to_string()
                    } else {
                        format!("add `after {component}` to `{current}`, so it is resolved first")
                    }),
            );
            return Ty::Unknown;
        }
        let info = &components.all[component];
        let Some(published) = &info.discovery else { return Ty::Unknown };
        match published.get(key) {
            Some(ty) => ty.clone(),
            None => {
                let keys: Vec<&SmolStr> = published.keys().collect();
                let suggestions = super::scope::closest(key, keys.iter().copied());
                let mut listed: Vec<String> = keys.iter().map(|k| format!("`{k}`")).collect();
                listed.sort();
                let help = did_you_mean(&suggestions).unwrap_or_else(|| {
                    if listed.is_empty() {
                        format!("`{component}` publishes nothing; add a `discovery {{ {key} = … }}` map to it")
                    } else {
                        format!("`{component}` publishes {}", listed.join(", "))
                    }
                });
                let span = path.segments.get(2).map_or(path.span, |s| s.span);
                self.report(
                    Diagnostic::new(
                        codes::UNKNOWN_DISCOVERY_KEY,
                        self.file,
                        span,
                        format!("`{component}` publishes no discovery value `{key}`"),
                    )
                    .with_primary_message("not published")
                    .with_help(help),
                );
                Ty::Unknown
            }
        }
    }
}

/// The value of a constant expression (label defaults, label maps, enum comparisons): the one
/// constant folder, so the checker and lowering read constants alike.
pub fn constant(expr: &Expr) -> Option<Value> {
    Some(match &expr.kind {
        ExprKind::Int(n) => Value::Int(*n),
        ExprKind::Bool(b) => Value::Bool(*b),
        ExprKind::Str(lit) => Value::Str(lit.as_plain()?),
        ExprKind::List(items) => Value::List(items.iter().map(constant).collect::<Option<_>>()?),
        ExprKind::Map(map) => Value::Map(
            map.entries
                .iter()
                .map(|e| Some((map_key_text(&e.key)?.to_string(), constant(&e.value)?)))
                .collect::<Option<_>>()?,
        ),
        ExprKind::Unary { op: UnaryOp::Neg, expr } => match constant(expr)? {
            Value::Int(n) => Value::Int(n.checked_neg()?),
            _ => return None,
        },
        ExprKind::Paren(inner) => constant(inner)?,
        _ => return None,
    })
}

/// The text of a string literal without interpolation.
pub fn constant_string(expr: &Expr) -> Option<String> {
    match constant(expr)? {
        Value::Str(text) => Some(text),
        _ => None,
    }
}

/// A short description of an expression for messages (`label env`).
fn describe(expr: &Expr) -> String {
    match &expr.kind {
        ExprKind::Path(path) => {
            let text: Vec<&str> = path.segments.iter().map(|s| s.text.as_str()).collect();
            format!("`{}`", text.join("."))
        }
        _ => "the enum".to_string(),
    }
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

fn conversion_help(have: &Ty, want: &Ty) -> String {
    match (have, want) {
        (Ty::Int, Ty::String | Ty::Enum(_)) => {
            "convert it with `to_string(…)` or write it in a string: \"${…}\"".to_string()
        }
        (Ty::String | Ty::Enum(_), Ty::Int) => {
            "convert it with `to_int(…)`, or write the number without quotes".to_string()
        }
        (Ty::String, Ty::Enum(variants)) => {
            let listed: Vec<String> = variants.iter().map(|v| format!("\"{v}\"")).collect();
            format!("only the constants {} are values of this enum", listed.join(", "))
        }
        (Ty::String | Ty::Int, Ty::Bool) => "write `true` or `false`, or a comparison".to_string(),
        (_, Ty::List(_)) => "write a list: `[…]`".to_string(),
        _ => format!("give a value of type `{want}`"),
    }
}

fn scope_help(what: &str, roots: Roots) -> String {
    match what {
        "cluster" => {
            "`cluster` is known only once a rule has placed the contract: in rules, `allocate per` and components"
                .to_string()
        }
        "instance" => "`instance` exists only in a component's `values` and `discovery`".to_string(),
        _ if roots == Roots::CONSTANT => "write a constant value here".to_string(),
        _ if roots == Roots::GRANT => "a grant's criteria may read only `user`".to_string(),
        _ => format!("`{what}` is not in scope here (docs/language.md §13.3)"),
    }
}
