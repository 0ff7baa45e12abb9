//! The semantic check of one file: every reference resolved, every expression typed, and
//! the checks that need only this file and the index (component dependencies, context
//! shadowing, rules that can never match).
//!
//! Besides diagnostics, it returns the [`FileFacts`] that whole-policy checks need (what the
//! file uses, the contract/service edges, the claims), without spans, so that those checks
//! re-run only when the facts change.
//!
//! By concern: `coverage` (context shadowing and exhaustiveness, rules that never match),
//! `test_blocks`, `grants` (users and grants); cycles are `semantics::graph`'s.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use crate::db::{Database, ManifestFile, SourceText, Workspace, parse_file, report};
use crate::diagnostics::{Diagnostic, codes};
use crate::syntax::ast::*;
use aptc_core::intern::Interner;

use super::expr::{Checker, ComponentInfo, Components, Env, Roots};
use super::graph::cycles;
use super::index::{Kind, ObjectRef, file_summary, map_key_text, workspace_index};
use super::scope::{Lookup, Scope, closest, did_you_mean};
use super::types::Ty;

mod assertions;
mod coverage;
mod grants;
mod test_blocks;

/// Who a claim is for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Consumer {
    User(SmolStr),
    Team(SmolStr),
}

/// A claim, as the access checks need it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClaimFacts {
    pub name: SmolStr,
    pub consumer: Option<Consumer>,
    pub contract: Option<ObjectRef>,
    /// The labels its `labels` map sets: one list shared by the claims of a file that set the
    /// same labels (at 100,000 claims, a list of their own was a third of the file checks' memory).
    pub labels: Arc<[ObjectRef]>,
}

/// What a file contributes to the whole-policy checks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileFacts {
    /// Objects this file refers to (labels, services, contracts, clusters).
    pub used: BTreeSet<ObjectRef>,
    /// Contract → a service one of its contexts uses.
    pub contract_uses: BTreeSet<(ObjectRef, ObjectRef)>,
    /// Service → a contract one of its components uses.
    pub service_uses: BTreeSet<(ObjectRef, ObjectRef)>,
    pub claims: Vec<ClaimFacts>,
    /// Namespaces this file imports.
    pub imports: BTreeSet<SmolStr>,
    /// Labels read where an unset label fails the claim, each at its first such read.
    pub label_reads: BTreeMap<ObjectRef, Span>,
    /// Labels this file sets: in claims, consumers (users, teams) and `set` of contracts,
    /// contexts and rules.
    pub label_writes: BTreeSet<ObjectRef>,
}

/// Where a `labels { … }` map describes a cluster: its keys are not labels any claim gets.
const CLUSTER_LABELS: &str = "a cluster's labels";

/// Checks one file against the index of the workspace. Evictable: unbounded unless the
/// database's owner sets a capacity (`host::Analysis` frees the facts once it has checked).
#[salsa::tracked(returns(ref), lru = 0)]
pub fn check_file(db: &dyn salsa::Database, ws: Workspace, file: SourceText) -> FileFacts {
    let index = workspace_index(db, ws);
    let summary = file_summary(db, file);
    let parse = parse_file(db, file);
    let Some(namespace) = summary.namespace.as_ref() else { return FileFacts::default() };
    let scope = Scope::new(index, namespace, &summary.imports);
    let mut checker = Checker {
        file: file.id(db),
        scope,
        out: Vec::new(),
        used: BTreeSet::new(),
        label_reads: BTreeMap::new(),
        optional_reads: 0,
        used_imports: HashSet::new(),
        labels_found: HashMap::new(),
    };
    let manifests: HashMap<&str, &Result<Vec<ManifestFile>, String>> = ws
        .manifests(db)
        .iter()
        .filter(|set| set.declared_in(db) == file.id(db))
        .map(|set| (set.glob(db).as_str(), set.files(db)))
        .collect();
    let mut walker =
        Walker { c: &mut checker, facts: FileFacts::default(), manifests: &manifests, label_lists: Interner::new() };
    for item in &parse.file.items {
        walker.item(item);
    }
    let mut facts = walker.facts;
    facts.claims.shrink_to_fit();
    if !parse.has_errors() {
        unused_imports(&mut checker, &parse.file);
    }
    facts.used.extend(std::mem::take(&mut checker.used));
    facts.label_reads = std::mem::take(&mut checker.label_reads);
    facts.imports = summary.imports.iter().map(|i| i.namespace.clone()).collect();
    for diagnostic in checker.out {
        report(db, diagnostic);
    }
    facts
}

/// Lets the database keep at most `checks` files' [`check_file`] results (the most recently used)
/// when it evicts (`salsa::Database::trigger_lru_eviction`); 0, the default, keeps all of them.
pub fn keep_checks(db: &mut Database, checks: usize) {
    check_file::set_lru_capacity(db, checks);
}

struct Walker<'c, 'a> {
    c: &'c mut Checker<'a>,
    facts: FileFacts,
    /// The files of this file's `manifests` components, by glob.
    manifests: &'c HashMap<&'c str, &'c Result<Vec<ManifestFile>, String>>,
    /// The lists of labels the file's claims set, each kept once ([`ClaimFacts::labels`]).
    label_lists: Interner<[ObjectRef]>,
}

const CONTRACT_ENV: Env = Env { roots: Roots::CONTRACT, place: "a contract", components: None };
const RULE_ENV: Env = Env { roots: Roots::PLACED, place: "a rule", components: None };

impl Walker<'_, '_> {
    fn namespace(&self) -> SmolStr {
        self.c.scope.namespace.clone()
    }

    fn item(&mut self, item: &Item) {
        match &item.kind {
            ItemKind::Namespace(ns) => {
                if let Some(owner) = &ns.owner {
                    self.reference(Kind::Team, std::slice::from_ref(owner), owner.span);
                }
            }
            ItemKind::Import(import) => self.import(import),
            ItemKind::Label(label) => self.label_decl(label),
            ItemKind::Service(service) => self.service(service),
            ItemKind::Contract(contract) => self.contract(contract),
            ItemKind::Rule(rule) => self.rule(rule),
            ItemKind::Cluster(cluster) => self.cluster(cluster),
            ItemKind::Claim(claim) => {
                let facts = self.claim(claim, None);
                self.facts.claims.push(facts);
            }
            ItemKind::Test(test) => self.test(test),
            ItemKind::Assert(assert) => self.assertion(assert),
            ItemKind::User(user) => self.user(user),
            ItemKind::Team(team) => {
                for stmt in team.body.iter().flat_map(|b| &b.stmts) {
                    if let TeamStmt::Labels(map) = &stmt.node {
                        self.label_map(map, "a team's labels");
                    }
                }
            }
            ItemKind::UsersFrom(from) => {
                self.c.plain(&from.path, "the path of a users file");
            }
            ItemKind::Grant(grant) => self.grant(grant),
            ItemKind::Function(function) => {
                for ty in function.params.iter().map(|p| &p.ty).chain([&function.ret]) {
                    self.type_expr(ty);
                }
            }
            ItemKind::Error => {}
        }
    }

    /// Resolves a reference to an object, reporting failures. Records the use.
    fn reference(&mut self, kind: Kind, segments: &[Ident], span: Span) -> Option<ObjectRef> {
        // Most references are one or two names (all `Scope::resolve` reads): those are looked up
        // without a `Vec` (a file of claims makes several references per claim).
        let mut few = [""; 2];
        let many: Vec<&str>;
        let texts: &[&str] = if segments.len() <= few.len() {
            for (slot, segment) in few.iter_mut().zip(segments) {
                *slot = segment.text.as_str();
            }
            &few[..segments.len()]
        } else {
            many = segments.iter().map(|s| s.text.as_str()).collect();
            &many
        };
        // As written, for messages only: most references resolve.
        let written = || texts.join(".");
        match self.c.scope.resolve(kind, texts) {
            Lookup::Found(object, via) => {
                if let Some(i) = via {
                    self.c.used_imports.insert(i);
                }
                self.facts.used.insert(object.clone());
                Some(object)
            }
            Lookup::Ambiguous(candidates, via) => {
                self.c.used_imports.extend(via);
                self.c.ambiguous(span, &written(), &candidates);
                None
            }
            Lookup::NotFound { suggestions } => {
                let written = written();
                let what = kind.as_str();
                let mut help = did_you_mean(&suggestions);
                if help.is_none() {
                    help = Some(match kind {
                        Kind::Team => format!("declare it in namespace `system`: `team {written}`"),
                        Kind::User => format!(
                            "declare it in namespace `system`: `user \"{written}\"`, or load it with `users from`"
                        ),
                        _ if texts.len() == 2 => format!("namespace `{}` declares no {what} of that name", texts[0]),
                        _ => format!("declare a {what} named `{written}`, or qualify the name with its namespace"),
                    });
                }
                let message = match kind {
                    Kind::Team | Kind::User => format!("there is no {what} `{written}`"),
                    _ if texts.len() == 2 => format!("namespace `{}` has no {what} `{}`", texts[0], texts[1]),
                    _ => format!("no {what} named `{written}` is visible here"),
                };
                let mut diagnostic = Diagnostic::new(codes::UNRESOLVED_NAME, self.c.file, span, message)
                    .with_primary_message(format!("unknown {what}"));
                diagnostic.help = help;
                if let Some(other) = self.other_kind(kind, texts) {
                    diagnostic = diagnostic.with_note(other);
                }
                self.c.out.push(diagnostic);
                None
            }
            Lookup::UnknownNamespace { namespace, suggestions } => {
                let help = did_you_mean(&suggestions)
                    .unwrap_or_else(|| "namespaces are declared by `namespace NAME` at the top of a file".to_string());
                self.c.report(
                    Diagnostic::new(
                        codes::UNRESOLVED_NAME,
                        self.c.file,
                        segments[0].span,
                        format!("there is no namespace `{namespace}`"),
                    )
                    .with_primary_message("unknown namespace")
                    .with_help(help),
                );
                None
            }
            Lookup::TooLong => {
                let written = written();
                self.c.report(
                    Diagnostic::new(
                        codes::UNRESOLVED_NAME,
                        self.c.file,
                        span,
                        format!("`{written}` has too many parts"),
                    )
                    .with_primary_message("a reference is `name` or `namespace.name`")
                    .with_help("namespaces are flat: write `namespace.name`".to_string()),
                );
                None
            }
        }
    }

    /// "there is a service named kafka" when a contract was expected, and so on.
    fn other_kind(&self, kind: Kind, texts: &[&str]) -> Option<String> {
        [Kind::Contract, Kind::Service, Kind::Cluster]
            .into_iter()
            .filter(|other| *other != kind)
            .find(|other| matches!(self.c.scope.resolve(*other, texts), Lookup::Found(..)))
            .map(|other| {
                format!("`{}` is a {}, but a {} is expected here", texts.join("."), other.as_str(), kind.as_str())
            })
    }

    fn import(&mut self, import: &Import) {
        let Some(first) = import.path.segments.first() else { return };
        let index = self.c.scope.index;
        if !index.namespaces.contains_key(&first.text) {
            let help = did_you_mean(&closest(&first.text, index.namespaces.keys()))
                .unwrap_or_else(|| "import a namespace that some file declares".to_string());
            self.c.report(
                Diagnostic::new(
                    codes::UNRESOLVED_IMPORT,
                    self.c.file,
                    first.span,
                    format!("there is no namespace `{}` to import", first.text),
                )
                .with_primary_message("unknown namespace")
                .with_help(help),
            );
            return;
        }
        if import.path.segments.len() > 2 {
            self.c.report(
                Diagnostic::new(
                    codes::UNRESOLVED_IMPORT,
                    self.c.file,
                    import.path.span,
                    "an import names a namespace or one of its objects",
                )
                .with_primary_message("too many parts")
                .with_help("write `import ns`, `import ns.name` or `import ns.{a, b}`".to_string()),
            );
            return;
        }
        let mut members: Vec<&Ident> = import.path.segments.iter().skip(1).collect();
        if let Some(list) = &import.members {
            members.extend(list);
            if import.alias.is_some() {
                let alias = import.alias.as_ref().map_or(import.path.span, |a| a.span);
                self.c.report(
                    Diagnostic::new(
                        codes::UNRESOLVED_IMPORT,
                        self.c.file,
                        alias,
                        "`as` cannot be combined with `{ … }`",
                    )
                    .with_primary_message("an alias for a list of names")
                    .with_help("import the names one by one to rename them: `import ns.a as b`".to_string()),
                );
            }
        }
        for member in members {
            let importable = [Kind::Contract, Kind::Service, Kind::Label];
            if !importable.iter().any(|k| index.has(*k, &first.text, &member.text)) {
                let names: Vec<&SmolStr> =
                    importable.iter().flat_map(|k| index.names_in(*k, first.text.as_str())).collect();
                let help = did_you_mean(&closest(&member.text, names.into_iter())).unwrap_or_else(|| {
                    format!("namespace `{}` declares no contract, service or label of that name", first.text)
                });
                self.c.report(
                    Diagnostic::new(
                        codes::UNRESOLVED_IMPORT,
                        self.c.file,
                        member.span,
                        format!("`{}` has nothing named `{}` to import", first.text, member.text),
                    )
                    .with_primary_message("not found")
                    .with_help(help),
                );
            }
        }
    }

    fn type_expr(&mut self, ty: &TypeExpr) -> Ty {
        match Ty::from_syntax(ty) {
            Ok(ty) => ty,
            Err(name) => {
                let known = ["string", "int", "bool", "any", "secret"].map(SmolStr::new_static);
                let help = did_you_mean(&closest(&name, known.iter())).unwrap_or_else(|| {
                    "types are `string`, `int`, `bool`, `any`, lists `[T]` and enums `\"a\" | \"b\"`".to_string()
                });
                self.c.report(
                    Diagnostic::new(codes::UNKNOWN_TYPE, self.c.file, ty.span, format!("there is no type `{name}`"))
                        .with_primary_message("unknown type")
                        .with_help(help),
                );
                Ty::Unknown
            }
        }
    }

    fn label_decl(&mut self, label: &LabelDecl) {
        if let TypeExprKind::Enum(variants) = &label.ty.kind {
            let mut seen: HashMap<String, Span> = HashMap::new();
            for variant in variants {
                let Some(text) = self.c.plain(variant, "an enum value") else { continue };
                if let Some(first) = seen.insert(text.clone(), variant.span) {
                    self.c.report(
                        Diagnostic::new(
                            codes::DUPLICATE_DEFINITION,
                            self.c.file,
                            variant.span,
                            format!("\"{text}\" is listed twice"),
                        )
                        .with_primary_message("again here")
                        .with_label(self.c.file, first, "first here")
                        .with_help("remove the repeated value".to_string()),
                    );
                }
            }
        }
        let ty = self.type_expr(&label.ty);
        if ty.holds_secret() {
            self.c.report(
                Diagnostic::new(
                    codes::SECRET_NOT_ALLOWED,
                    self.c.file,
                    label.ty.span,
                    format!("label `{}` cannot hold a secret", label.name.text),
                )
                .with_primary_message("a secret cannot be used here")
                .with_help(
                    "labels are read and compared during resolution; give the secret directly as a value: \
`values { password = secret_env(\"NAME\") }`"
                        .to_string(),
                ),
            );
        }
        if let Some(default) = &label.default {
            let env = Env { roots: Roots::CONSTANT, place: "a label default", components: None };
            self.c.expect(default, &env, &ty, format_args!("the default of label `{}`", label.name.text));
        }
    }

    /// A `labels { … }` map of constants: keys are visible labels, values fit their types. Returns
    /// the labels it sets that resolve, in order (the keys that resolve to nothing are left out).
    fn label_map(&mut self, map: &MapLit, place: &'static str) -> Vec<ObjectRef> {
        let env = Env { roots: Roots::CONSTANT, place, components: None };
        let mut labels = Vec::with_capacity(map.entries.len());
        for entry in &map.entries {
            let key = match &entry.key {
                MapKey::Name(ident) => ident.clone(),
                MapKey::Str(lit) => match self.c.plain(lit, "a label key") {
                    Some(text) => Ident { text: text.into(), span: lit.span },
                    None => continue,
                },
            };
            match self.c.label(&key) {
                Some((object, ty)) => {
                    // A cluster's labels describe the cluster (`cluster.labels.KEY`), not claims.
                    if place != CLUSTER_LABELS {
                        self.facts.label_writes.insert(object.clone());
                    }
                    self.c.expect(&entry.value, &env, &ty, format_args!("label `{}`", key.text));
                    labels.push(object);
                }
                None => {
                    self.c.expr(&entry.value, &env);
                }
            }
        }
        labels
    }

    fn label_op(&mut self, op: &LabelOp, env: &Env) {
        match op {
            LabelOp::Set { label, value } => match self.c.label(label) {
                Some((object, ty)) => {
                    self.facts.label_writes.insert(object);
                    self.c.expect(value, env, &ty, format_args!("label `{}`", label.text))
                }
                None => {
                    self.c.expr(value, env);
                }
            },
            LabelOp::Remove { label } => {
                self.c.label(label);
            }
        }
    }

    fn service(&mut self, service: &Service) {
        let components: Vec<&Component> = service
            .body
            .stmts
            .iter()
            .filter_map(|s| match &s.node {
                ServiceStmt::Component(c) => Some(c),
                ServiceStmt::Error => None,
            })
            .collect();
        let me = ObjectRef { kind: Kind::Service, namespace: self.namespace(), name: service.name.text.clone() };
        // A statement the parser skipped may have been a component: names not found among the
        // components are not reported again (the parse error is the one to fix).
        let incomplete = super::index::is_incomplete(service);
        let mut by_name: HashMap<SmolStr, &Component> = HashMap::new();
        for component in &components {
            if let Some(first) = by_name.insert(component.name.text.clone(), component) {
                self.c.report(
                    Diagnostic::new(
                        codes::DUPLICATE_DEFINITION,
                        self.c.file,
                        component.name.span,
                        format!("component `{}` is declared twice", component.name.text),
                    )
                    .with_primary_message("declared again")
                    .with_label(self.c.file, first.name.span, "first declared here")
                    .with_help("rename one of the components".to_string()),
                );
            }
        }
        // The dependency graph from `after`.
        let mut after: BTreeMap<SmolStr, Vec<SmolStr>> = BTreeMap::new();
        for component in &components {
            let deps = after.entry(component.name.text.clone()).or_default();
            for stmt in component.body.iter().flat_map(|b| &b.stmts) {
                let ComponentStmt::After(names) = &stmt.node else { continue };
                for name in names {
                    if name.text == component.name.text {
                        self.c.report(
                            Diagnostic::new(
                                codes::DEPENDENCY_CYCLE,
                                self.c.file,
                                name.span,
                                format!("component `{}` depends on itself", name.text),
                            )
                            .with_primary_message("itself")
                            .with_help("remove it from `after`".to_string()),
                        );
                    } else if by_name.contains_key(&name.text) {
                        deps.push(name.text.clone());
                    } else if !incomplete {
                        let help = did_you_mean(&closest(&name.text, by_name.keys()))
                            .unwrap_or_else(|| "`after` names components of the same service".to_string());
                        self.c.report(
                            Diagnostic::new(
                                codes::UNRESOLVED_NAME,
                                self.c.file,
                                name.span,
                                format!("service `{}` has no component `{}`", service.name.text, name.text),
                            )
                            .with_primary_message("unknown component")
                            .with_help(help),
                        );
                    }
                }
            }
        }
        self.dependency_cycles(&after, &by_name);
        self.duplicate_discovery_keys(&components);
        // What each component publishes, for `C.discovery.KEY`.
        let mut infos: HashMap<SmolStr, ComponentInfo> = HashMap::new();
        for component in &components {
            let info = self.component_info(component);
            infos.insert(component.name.text.clone(), info);
        }
        for component in &components {
            let dependencies = transitive(&after, &component.name.text);
            let scope = Components {
                all: &infos,
                current: &component.name.text,
                dependencies: &dependencies,
                reads_received: false,
                values: None,
                incomplete,
            };
            self.component(component, &scope, &me);
        }
    }

    /// A service publishes the union of its components' discovery: a key twice is ambiguous.
    fn duplicate_discovery_keys(&mut self, components: &[&Component]) {
        let mut first: HashMap<SmolStr, (Span, SmolStr)> = HashMap::new();
        for component in components {
            let maps = component.body.iter().flat_map(|b| &b.stmts).filter_map(|s| match &s.node {
                ComponentStmt::Discovery(map) => Some(map),
                _ => None,
            });
            for entry in maps.flat_map(|m| &m.entries) {
                let Some(key) = map_key_text(&entry.key) else { continue };
                match first.get(&key) {
                    Some((span, owner)) if *owner != component.name.text => {
                        let (span, owner) = (*span, owner.clone());
                        self.c.report(
                            Diagnostic::new(
                                codes::DUPLICATE_DEFINITION,
                                self.c.file,
                                entry.key.span(),
                                format!(
                                    "discovery key `{key}` is published by `{owner}` and by `{}`",
                                    component.name.text
                                ),
                            )
                            .with_primary_message("published again")
                            .with_label(self.c.file, span, format!("published by `{owner}`"))
                            .with_help("a service publishes one value per key: rename one of them"),
                        );
                    }
                    Some(_) => {}
                    None => {
                        first.insert(key, (entry.key.span(), component.name.text.clone()));
                    }
                }
            }
        }
    }

    fn dependency_cycles(&mut self, after: &BTreeMap<SmolStr, Vec<SmolStr>>, by_name: &HashMap<SmolStr, &Component>) {
        for cycle in cycles(after) {
            {
                let shown: Vec<&str> = cycle.iter().map(|s| s.as_str()).chain([cycle[0].as_str()]).collect();
                let first = by_name[&cycle[0]];
                let mut diagnostic = Diagnostic::new(
                    codes::DEPENDENCY_CYCLE,
                    self.c.file,
                    first.name.span,
                    format!("components depend on each other in a cycle: {}", shown.join(" → ")),
                )
                .with_primary_message("part of the cycle")
                .with_help("remove one of the `after` dependencies; each component must be resolvable before the ones that need it");
                for name in &cycle[1..] {
                    diagnostic = diagnostic.with_label(self.c.file, by_name[name].name.span, "part of the cycle");
                }
                self.c.out.push(diagnostic);
            }
        }
    }

    fn component_info(&mut self, component: &Component) -> ComponentInfo {
        let own = component.body.iter().flat_map(|b| &b.stmts).filter_map(|s| match &s.node {
            ComponentStmt::Discovery(map) => Some(map),
            _ => None,
        });
        if super::index::component_is_incomplete(component) {
            // A skipped statement may have published keys: what it publishes is unknown.
            return ComponentInfo { discovery: None };
        }
        let mut discovery: HashMap<SmolStr, Ty> = HashMap::new();
        for map in own {
            for entry in &map.entries {
                if let Some(key) = map_key_text(&entry.key) {
                    discovery.insert(key, literal_type(&entry.value));
                }
            }
        }
        if let ComponentSource::Uses(path) = &component.source.node {
            let texts: Vec<&str> = path.segments.iter().map(|s| s.text.as_str()).collect();
            let Lookup::Found(contract, _) = self.c.scope.resolve(Kind::Contract, &texts) else {
                return ComponentInfo { discovery: None };
            };
            let index = self.c.scope.index;
            let services = index.contract_services.get(&(contract.namespace.clone(), contract.name.clone()));
            let mut common: Option<HashSet<SmolStr>> = None;
            for service in services.into_iter().flatten() {
                if index.incomplete.contains(&(contract.namespace.clone(), service.clone())) {
                    // Its components were not all parsed: what it publishes is unknown.
                    return ComponentInfo { discovery: None };
                }
                let keys: HashSet<SmolStr> = index
                    .published
                    .get(&(contract.namespace.clone(), service.clone()))
                    .map(|k| k.iter().cloned().collect())
                    .unwrap_or_default();
                common = Some(match common {
                    None => keys,
                    Some(before) => before.intersection(&keys).cloned().collect(),
                });
            }
            for key in common.unwrap_or_default() {
                discovery.entry(key).or_insert(Ty::Unknown);
            }
        }
        ComponentInfo { discovery: Some(discovery) }
    }

    fn component(&mut self, component: &Component, scope: &Components, service: &ObjectRef) {
        match &component.source.node {
            ComponentSource::Uses(path) => {
                if let Some(contract) = self.reference(Kind::Contract, &path.segments, path.span) {
                    self.facts.service_uses.insert((service.clone(), contract));
                }
            }
            ComponentSource::Chart(lit) => {
                self.c.plain(lit, "a chart");
            }
            ComponentSource::Manifests(lit) => {
                self.c.plain(lit, "a manifests path");
            }
        }
        let mut value_types: HashMap<SmolStr, Ty> = HashMap::new();
        let values = Env { roots: Roots::COMPONENT, place: "a component's values", components: Some(scope) };
        let when = Env { roots: Roots::PLACED, place: "a component's `when`", components: Some(scope) };
        for stmt in component.body.iter().flat_map(|b| &b.stmts) {
            match &stmt.node {
                ComponentStmt::Repo(lit) => {
                    self.c.plain(lit, "a chart repository");
                }
                ComponentStmt::Version(lit) => {
                    self.c.plain(lit, "a chart version");
                }
                ComponentStmt::When(expr) => self.c.condition(expr, &when, "a component's `when`"),
                ComponentStmt::Values(map) => {
                    for entry in &map.entries {
                        if let MapKey::Str(key) = &entry.key {
                            self.c.map_key(key, &values);
                        }
                        let ty = self.c.value(&entry.value, &values);
                        if let Some(key) = map_key_text(&entry.key) {
                            value_types.insert(key, ty);
                        }
                    }
                }
                ComponentStmt::Discovery(map) => {
                    let reexport = Components {
                        reads_received: matches!(component.source.node, ComponentSource::Uses(_)),
                        ..*scope
                    };
                    let env = Env { components: Some(&reexport), ..values };
                    for entry in &map.entries {
                        if let MapKey::Str(key) = &entry.key {
                            self.c.plain(key, "a discovery key");
                        }
                        self.c.expr(&entry.value, &env);
                    }
                }
                ComponentStmt::After(_) | ComponentStmt::Error => {}
            }
        }
        if let ComponentSource::Manifests(glob) = &component.source.node
            && let Some(files) = glob.as_plain().and_then(|glob| self.manifests.get(glob.as_str()))
        {
            let templates = Components { values: Some(&value_types), ..*scope };
            let env = Env { place: "a manifest template", components: Some(&templates), ..values };
            super::manifests::check_templates(self.c, glob, files, &env);
        }
    }

    fn contract(&mut self, contract: &Contract) {
        let me = ObjectRef { kind: Kind::Contract, namespace: self.namespace(), name: contract.name.text.clone() };
        let mut names: HashMap<SmolStr, Span> = HashMap::new();
        let mut contexts: Vec<&Context> = Vec::new();
        for stmt in &contract.body.stmts {
            match &stmt.node {
                ContractStmt::LabelOp(op) => self.label_op(op, &CONTRACT_ENV),
                ContractStmt::Context(context) => {
                    if let Some(first) = names.insert(context.name.text.clone(), context.name.span) {
                        self.c.report(
                            Diagnostic::new(
                                codes::DUPLICATE_DEFINITION,
                                self.c.file,
                                context.name.span,
                                format!("context `{}` is declared twice", context.name.text),
                            )
                            .with_primary_message("declared again")
                            .with_label(self.c.file, first, "first declared here")
                            .with_help("rename one of the contexts".to_string()),
                        );
                    }
                    self.context(context, &me);
                    contexts.push(context);
                }
                ContractStmt::Error => {}
            }
        }
        self.context_coverage(contract, &contexts);
    }

    fn context(&mut self, context: &Context, contract: &ObjectRef) {
        if let Some(criteria) = &context.criteria {
            self.c.condition(criteria, &CONTRACT_ENV, "a context's `when`");
        }
        let allocate = Env { roots: Roots::PLACED, place: "`allocate per`", components: None };
        for stmt in &context.body.stmts {
            match &stmt.node {
                ContextStmt::LabelOp(op) => self.label_op(op, &CONTRACT_ENV),
                ContextStmt::Allocate(keys) => {
                    for key in keys {
                        let ty = self.c.expr(key, &allocate);
                        if !ty.is_scalar() {
                            self.c.report(
                                Diagnostic::new(
                                    codes::TYPE_MISMATCH,
                                    self.c.file,
                                    key.span,
                                    format!("an allocation key must be a string, number or bool, not `{ty}`"),
                                )
                                .with_primary_message(format!("`{ty}`"))
                                .with_help("use a scalar, e.g. `join(user.groups, \",\")`".to_string()),
                            );
                        }
                    }
                }
                ContextStmt::Use(path) => {
                    let Some(service) = self.reference(Kind::Service, &path.segments, path.span) else { continue };
                    if service.namespace != contract.namespace {
                        self.c.report(Diagnostic::new(codes::UNRESOLVED_NAME, self.c.file, path.span, format!("service `{service}` is not in the contract's namespace `{}`", contract.namespace))
                            .with_primary_message("another team's service")
                            .with_help("a contract offers services of its own namespace; depend on other teams' services through their contracts (`component x uses ns.contract`)".to_string()));
                    }
                    self.facts.contract_uses.insert((contract.clone(), service));
                }
                ContextStmt::Error => {}
            }
        }
    }

    fn rule(&mut self, rule: &Rule) {
        if let Some(weight) = &rule.weight
            && weight.node < 0
        {
            self.c.report(
                Diagnostic::new(codes::TYPE_MISMATCH, self.c.file, weight.span, "a rule's weight cannot be negative")
                    .with_primary_message("negative")
                    .with_help("weights are 0 or more; lower weights run first".to_string()),
            );
        }
        if let Some(criteria) = &rule.criteria {
            self.c.condition(criteria, &RULE_ENV, "a rule's `when`");
            self.never_matches(rule, criteria);
        }
        for stmt in &rule.body.stmts {
            match &stmt.node {
                RuleStmt::LabelOp(op) => self.label_op(op, &RULE_ENV),
                RuleStmt::Reject(message) => self.c.string(message, &RULE_ENV),
                RuleStmt::Place { cluster, namespace } => {
                    self.reference(Kind::Cluster, &cluster.segments, cluster.span);
                    if let Some(namespace) = namespace {
                        self.c.expect(namespace, &RULE_ENV, &Ty::String, "a Kubernetes namespace");
                    }
                }
                RuleStmt::Error => {}
            }
        }
    }

    fn cluster(&mut self, cluster: &Cluster) {
        for stmt in &cluster.body.stmts {
            match &stmt.node {
                ClusterStmt::Context(lit) => {
                    self.c.plain(lit, "a kubeconfig context");
                }
                ClusterStmt::Kubeconfig(lit) => {
                    self.c.plain(lit, "a kubeconfig path");
                }
                ClusterStmt::KubeconfigSecret { name, key } => {
                    self.c.plain(name, "a Secret's name");
                    if let Some(key) = key {
                        self.c.plain(key, "a Secret's key");
                    }
                }
                ClusterStmt::InCluster(_) => {}
                ClusterStmt::Namespace(lit) => {
                    self.c.plain(lit, "a cluster's default namespace");
                }
                ClusterStmt::Labels(map) => {
                    self.label_map(map, CLUSTER_LABELS);
                }
                ClusterStmt::Error => {}
            }
        }
    }

    /// A claim; in a test, `test_users` are the test's own users (lower-cased), which it may name.
    fn claim(&mut self, claim: &Claim, test_users: Option<&HashMap<String, Span>>) -> ClaimFacts {
        let mut facts = ClaimFacts {
            name: claim.name.text.clone(),
            consumer: None,
            contract: None,
            labels: self.label_lists.intern(Vec::new()),
        };
        for stmt in &claim.body.stmts {
            match &stmt.node {
                ClaimStmt::User(lit) => {
                    if let Some(name) = self.c.plain(lit, "a user name") {
                        let ident = Ident { text: name.clone().into(), span: lit.span };
                        let own = test_users.is_some_and(|users| users.contains_key(&name.to_lowercase()));
                        if own || self.reference(Kind::User, std::slice::from_ref(&ident), lit.span).is_some() {
                            facts.consumer = Some(Consumer::User(name.to_lowercase().into()));
                        }
                    }
                }
                ClaimStmt::Team(team) => {
                    if self.reference(Kind::Team, std::slice::from_ref(team), team.span).is_some() {
                        facts.consumer = Some(Consumer::Team(team.text.clone()));
                    }
                }
                ClaimStmt::Contract(path) => facts.contract = self.reference(Kind::Contract, &path.segments, path.span),
                ClaimStmt::Labels(map) => {
                    let labels = self.label_map(map, "a claim's labels");
                    facts.labels = self.label_lists.intern(labels);
                }
                ClaimStmt::Error => {}
            }
        }
        facts
    }
}

/// Reports imports that resolved nothing.
fn unused_imports(checker: &mut Checker, file: &SourceFile) {
    let imports = file.items.iter().filter_map(|item| match &item.kind {
        ItemKind::Import(import) => Some((item, import)),
        _ => None,
    });
    for (i, (item, import)) in imports.enumerate() {
        let known =
            import.path.segments.first().is_some_and(|ns| checker.scope.index.namespaces.contains_key(&ns.text));
        if known && !checker.used_imports.contains(&i) {
            checker.out.push(
                Diagnostic::new(codes::UNUSED_IMPORT, checker.file, item.span, "this import is never used")
                    .with_primary_message("unused")
                    .with_help("remove it; qualified names (`ns.name`) need no import"),
            );
        }
    }
}

/// The components `start` depends on, directly or not.
fn transitive(after: &BTreeMap<SmolStr, Vec<SmolStr>>, start: &SmolStr) -> HashSet<SmolStr> {
    let mut seen = HashSet::new();
    let mut stack: Vec<&SmolStr> = after.get(start).into_iter().flatten().collect();
    while let Some(next) = stack.pop() {
        if seen.insert(next.clone()) {
            stack.extend(after.get(next).into_iter().flatten());
        }
    }
    seen
}

/// The type of a discovery value as far as it is known without checking it.
fn literal_type(expr: &Expr) -> Ty {
    match &expr.kind {
        ExprKind::Str(_) => Ty::String,
        ExprKind::Int(_) => Ty::Int,
        ExprKind::Bool(_) => Ty::Bool,
        _ => Ty::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::host::Analysis;

    /// Claims of a file that set the same labels (in the same order) share one list of them.
    #[test]
    fn claims_setting_the_same_labels_share_the_list() {
        let policy = r#"namespace system
label env: "dev" | "prod" = "dev"
label region: string = "eu"
claim a {
    labels { env = "dev", region = "eu" }
}
claim b {
    labels { region = "eu", env = "dev" }
}
claim c {
    labels { env = "prod", region = "us" }
}
"#;
        let analysis = Analysis::of_texts([("system.apt", policy)]);
        let (db, ws) = (analysis.db(), analysis.workspace());
        let facts = super::check_file(db, ws, ws.files(db)[0]);
        let labels: Vec<&Arc<[super::ObjectRef]>> = facts.claims.iter().map(|c| &c.labels).collect();
        let names = |list: &Arc<[super::ObjectRef]>| list.iter().map(|l| l.name.to_string()).collect::<Vec<_>>();
        assert_eq!(names(labels[0]), ["env", "region"]);
        assert_eq!(names(labels[1]), ["region", "env"]);
        assert!(Arc::ptr_eq(labels[0], labels[2]));
        assert!(!Arc::ptr_eq(labels[0], labels[1]));
    }
}
