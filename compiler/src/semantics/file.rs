//! The semantic check of one file: every reference resolved, every expression typed, and
//! the checks that need only this file and the index (component dependencies, context
//! shadowing, rules that can never match).
//!
//! Besides diagnostics, it returns the [`FileFacts`] that whole-policy checks need (what the
//! file uses, the contract/service edges, the claims), without spans, so that those checks
//! re-run only when the facts change.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::db::{ManifestFile, SourceText, Workspace, parse_file, report};
use crate::diagnostics::{Diagnostic, codes};
use crate::syntax::ast::*;

use super::expr::{Checker, ComponentInfo, Components, Env, Roots, constant_string};
use super::index::{Kind, ObjectRef, file_summary, map_key_text, workspace_index};
use super::scope::{Lookup, Scope, closest, did_you_mean};
use super::types::Ty;

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
    /// The labels its `labels` map sets.
    pub labels: Vec<ObjectRef>,
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
}

/// Checks one file against the index of the workspace.
#[salsa::tracked(returns(ref))]
pub fn check_file(db: &dyn salsa::Database, ws: Workspace, file: SourceText) -> FileFacts {
    let index = workspace_index(db, ws);
    let summary = file_summary(db, file);
    let parse = parse_file(db, file);
    let Some(namespace) = summary.namespace.as_ref() else { return FileFacts::default() };
    let scope = Scope { index, namespace, imports: &summary.imports };
    let mut checker =
        Checker { file: file.id(db), scope, out: Vec::new(), used: BTreeSet::new(), used_imports: HashSet::new() };
    let manifests: HashMap<&str, &Result<Vec<ManifestFile>, String>> = ws
        .manifests(db)
        .iter()
        .filter(|set| set.declared_in(db) == file.id(db))
        .map(|set| (set.glob(db).as_str(), set.files(db)))
        .collect();
    let mut walker = Walker { c: &mut checker, facts: FileFacts::default(), manifests: &manifests };
    for item in &parse.file.items {
        walker.item(item);
    }
    let mut facts = walker.facts;
    if !parse.has_errors() {
        unused_imports(&mut checker, &parse.file);
    }
    facts.used.extend(std::mem::take(&mut checker.used));
    facts.imports = summary.imports.iter().map(|i| i.namespace.clone()).collect();
    for diagnostic in checker.out {
        report(db, diagnostic);
    }
    facts
}

struct Walker<'c, 'a> {
    c: &'c mut Checker<'a>,
    facts: FileFacts,
    /// The files of this file's `manifests` components, by glob.
    manifests: &'c HashMap<&'c str, &'c Result<Vec<ManifestFile>, String>>,
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
        let texts: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
        let written = texts.join(".");
        match self.c.scope.resolve(kind, &texts) {
            Lookup::Found(object, via) => {
                if let Some(i) = via {
                    self.c.used_imports.insert(i);
                }
                self.facts.used.insert(object.clone());
                Some(object)
            }
            Lookup::Ambiguous(candidates, via) => {
                self.c.used_imports.extend(via);
                self.c.ambiguous(span, &written, &candidates);
                None
            }
            Lookup::NotFound { suggestions } => {
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
                if let Some(other) = self.other_kind(kind, &texts) {
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
            self.c.expect(default, &env, &ty, &format!("the default of label `{}`", label.name.text));
        }
    }

    /// A `labels { … }` map of constants: keys are visible labels, values fit their types.
    fn label_map(&mut self, map: &MapLit, place: &'static str) {
        let env = Env { roots: Roots::CONSTANT, place, components: None };
        for entry in &map.entries {
            let key = match &entry.key {
                MapKey::Name(ident) => ident.clone(),
                MapKey::Str(lit) => match self.c.plain(lit, "a label key") {
                    Some(text) => Ident { text: text.into(), span: lit.span },
                    None => continue,
                },
            };
            match self.c.label(&key) {
                Some((_, ty)) => self.c.expect(&entry.value, &env, &ty, &format!("label `{}`", key.text)),
                None => {
                    self.c.expr(&entry.value, &env);
                }
            }
        }
    }

    /// The labels a `labels { … }` map sets, resolved (keys that resolve to nothing are left out).
    fn label_ids(&self, map: &MapLit) -> Vec<ObjectRef> {
        map.entries
            .iter()
            .filter_map(|entry| map_key_text(&entry.key))
            .filter_map(|key| match self.c.scope.resolve(Kind::Label, &[key.as_str()]) {
                Lookup::Found(label, _) => Some(label),
                _ => None,
            })
            .collect()
    }

    fn label_op(&mut self, op: &LabelOp, env: &Env) {
        match op {
            LabelOp::Set { label, value } => match self.c.label(label) {
                Some((_, ty)) => self.c.expect(value, env, &ty, &format!("label `{}`", label.text)),
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
                    } else {
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

    /// Shadowed contexts (APT0403) and enum labels the contexts leave uncovered (APT0404).
    fn context_coverage(&mut self, contract: &Contract, contexts: &[&Context]) {
        let mut catch_all: Option<&Context> = None;
        let mut covered: BTreeMap<ObjectRef, Coverage> = BTreeMap::new();
        let mut all_on_one_label = true;
        for context in contexts {
            if let Some(earlier) = catch_all {
                self.c.out.push(
                    Diagnostic::new(codes::UNREACHABLE_CONTEXT, self.c.file, context.name.span, format!("context `{}` can never be chosen", context.name.text))
                        .with_primary_message("unreachable")
                        .with_label(self.c.file, earlier.name.span, "this earlier context always matches")
                        .with_help("contexts are tried in order and the first match wins: move the fallback last, or give it a `when`"),
                );
                continue;
            }
            let exhausted = covered.iter().find(|(_, (variants, set, _))| variants.iter().all(|v| set.contains(v)));
            if let Some((label, (_, _, spans))) = exhausted {
                let mut diagnostic = Diagnostic::new(codes::UNREACHABLE_CONTEXT, self.c.file, context.name.span, format!("context `{}` can never be chosen", context.name.text))
                    .with_primary_message("unreachable")
                    .with_help(format!("the earlier contexts already cover every value of label `{}`; remove this context or narrow the earlier ones", label.name));
                for span in spans {
                    diagnostic = diagnostic.with_label(self.c.file, *span, "covered here");
                }
                self.c.out.push(diagnostic);
                continue;
            }
            match context.criteria.as_ref() {
                None => catch_all = Some(context),
                Some(e) if matches!(strip(e).kind, ExprKind::Bool(true)) => catch_all = Some(context),
                Some(e) => match self.coverage(e) {
                    Some((label, variants, set)) => {
                        let entry = covered.entry(label).or_insert_with(|| (variants, BTreeSet::new(), Vec::new()));
                        entry.1.extend(set);
                        entry.2.push(e.span);
                    }
                    None => all_on_one_label = false,
                },
            }
        }
        if catch_all.is_none() && all_on_one_label && covered.len() == 1 {
            let (label, (variants, set, _)) = covered.iter().next().expect("one entry");
            // The contract may set the label itself before choosing: then coverage is its choice.
            let set_by_contract = contract.body.stmts.iter().any(|stmt| match &stmt.node {
                ContractStmt::LabelOp(LabelOp::Set { label: l, .. } | LabelOp::Remove { label: l }) => {
                    l.text == label.name
                }
                _ => false,
            });
            if set_by_contract {
                return;
            }
            let missing: Vec<String> =
                variants.iter().filter(|v| !set.contains(*v)).map(|v| format!("\"{v}\"")).collect();
            if !missing.is_empty() {
                self.c.out.push(
                    Diagnostic::new(
                        codes::NON_EXHAUSTIVE_CONTRACT,
                        self.c.file,
                        contract.name.span,
                        format!(
                            "no context of contract `{}` matches label `{}` = {}",
                            contract.name.text,
                            label.name,
                            missing.join(", ")
                        ),
                    )
                    .with_primary_message(format!("{} uncovered", missing.join(", ")))
                    .with_help("add a context for those values, or a fallback context without `when` at the end"),
                );
            }
        }
    }

    /// For criteria that only test one enum label (`labels.e == "a"`, `labels.e in [...]`,
    /// `or`s of those): the label, its variants and the values that match.
    fn coverage(&self, expr: &Expr) -> Option<(ObjectRef, Vec<SmolStr>, BTreeSet<SmolStr>)> {
        let expr = strip(expr);
        match &expr.kind {
            ExprKind::Binary { op: BinaryOp::Or, lhs, rhs } => {
                let (a, variants, mut left) = self.coverage(lhs)?;
                let (b, _, right) = self.coverage(rhs)?;
                (a == b).then(|| {
                    left.extend(right);
                    (a, variants, left)
                })
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let (label, variants) = self.enum_label(lhs)?;
                let values: BTreeSet<SmolStr> = match (op, &rhs.kind) {
                    (BinaryOp::Eq, _) => {
                        // A value outside the enum is an error of its own (APT0303).
                        let value = SmolStr::new(constant_string(rhs)?);
                        if !variants.contains(&value) {
                            return None;
                        }
                        [value].into()
                    }
                    (BinaryOp::Ne, _) => {
                        let excluded = constant_string(rhs)?;
                        variants.iter().filter(|v| v.as_str() != excluded).cloned().collect()
                    }
                    (BinaryOp::In | BinaryOp::NotIn, ExprKind::List(items)) => {
                        let listed: Option<BTreeSet<SmolStr>> =
                            items.iter().map(|i| constant_string(i).map(SmolStr::new)).collect();
                        let listed = listed?;
                        if *op == BinaryOp::In {
                            listed
                        } else {
                            variants.iter().filter(|v| !listed.contains(*v)).cloned().collect()
                        }
                    }
                    _ => return None,
                };
                Some((label, variants, values))
            }
            _ => None,
        }
    }

    fn enum_label(&self, expr: &Expr) -> Option<(ObjectRef, Vec<SmolStr>)> {
        let ExprKind::Path(path) = &strip(expr).kind else { return None };
        let [root, key] = path.segments.as_slice() else { return None };
        if root.text != "labels" {
            return None;
        }
        let Lookup::Found(label, _) = self.c.scope.resolve(Kind::Label, &[key.text.as_str()]) else { return None };
        match &self.c.scope.index.labels.get(&(label.namespace.clone(), label.name.clone()))?.ty {
            Ty::Enum(variants) => Some((label, variants.to_vec())),
            _ => None,
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

    /// A rule whose criteria require an enum label to take two exclusive values (APT0405).
    fn never_matches(&mut self, rule: &Rule, criteria: &Expr) {
        let mut conjuncts = Vec::new();
        flatten_and(criteria, &mut conjuncts);
        let mut allowed: BTreeMap<ObjectRef, BTreeSet<SmolStr>> = BTreeMap::new();
        for conjunct in conjuncts {
            let Some((label, variants, set)) = self.coverage(conjunct) else { continue };
            let entry = allowed.entry(label.clone()).or_insert_with(|| variants.into_iter().collect());
            entry.retain(|v| set.contains(v));
            if entry.is_empty() {
                self.c.out.push(
                    Diagnostic::new(
                        codes::RULE_NEVER_MATCHES,
                        self.c.file,
                        criteria.span,
                        format!("rule `{}` can never match", rule.name.text),
                    )
                    .with_primary_message(format!("no value of label `{}` satisfies all of this", label.name))
                    .with_label(self.c.file, rule.name.span, "this rule never fires")
                    .with_help("the conditions on the label exclude each other; did you mean `or`?"),
                );
                return;
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
                ClusterStmt::Namespace(lit) => {
                    self.c.plain(lit, "a cluster's default namespace");
                }
                ClusterStmt::Labels(map) => self.label_map(map, "a cluster's labels"),
                ClusterStmt::Error => {}
            }
        }
    }

    /// A claim; in a test, `test_users` are the test's own users (lower-cased), which it may name.
    fn claim(&mut self, claim: &Claim, test_users: Option<&HashMap<String, Span>>) -> ClaimFacts {
        let mut facts =
            ClaimFacts { name: claim.name.text.clone(), consumer: None, contract: None, labels: Vec::new() };
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
                    self.label_map(map, "a claim's labels");
                    facts.labels = self.label_ids(map);
                }
                ClaimStmt::Error => {}
            }
        }
        facts
    }

    /// A test: its own users and claims (which must not clash with each other or with the
    /// policy's), and every name its expectations use. Its claims are not facts of the file:
    /// they exist only while the test runs, so no whole-policy check sees them.
    fn test(&mut self, test: &TestBlock) {
        let namespace = self.namespace();
        let index = self.c.scope.index;
        let mut users: HashMap<String, Span> = HashMap::new();
        let mut claims: HashMap<SmolStr, Span> = HashMap::new();
        for stmt in &test.body.stmts {
            let (what, name, key, span, in_policy) = match &stmt.node {
                TestStmt::User(user) => {
                    let Some(name) = user.name.as_plain() else { continue };
                    let key = name.to_lowercase();
                    let in_policy = index.has(Kind::User, "", &key);
                    ("user", name, key, user.name.span, in_policy)
                }
                TestStmt::Claim(claim) => {
                    let name = claim.name.text.to_string();
                    let in_policy = index.has(Kind::Claim, &namespace, &name);
                    ("claim", name.clone(), name, claim.name.span, in_policy)
                }
                _ => continue,
            };
            let first = match what {
                "user" => users.get(&key).copied(),
                _ => claims.get(key.as_str()).copied(),
            };
            if let Some(first) = first {
                self.c.report(
                    Diagnostic::new(
                        codes::DUPLICATE_DEFINITION,
                        self.c.file,
                        span,
                        format!("{what} `{name}` is declared twice in test `{}`", test.name.text),
                    )
                    .with_primary_message("declared again here")
                    .with_label(self.c.file, first, "first declared here")
                    .with_help("rename one of them, or remove the second"),
                );
            } else if in_policy {
                let where_ = if what == "user" { "the policy".to_string() } else { format!("namespace `{namespace}`") };
                self.c.report(
                    Diagnostic::new(
                        codes::DUPLICATE_DEFINITION,
                        self.c.file,
                        span,
                        format!("{what} `{name}` is already declared in {where_}"),
                    )
                    .with_primary_message(format!("a test's {what} is added to the policy's"))
                    .with_help(format!(
                        "give the test's {what} a name of its own; expectations may name the policy's {what}s directly"
                    )),
                );
            } else if what == "user" {
                users.insert(key, span);
            } else {
                claims.insert(key.into(), span);
            }
        }
        for stmt in &test.body.stmts {
            match &stmt.node {
                TestStmt::User(user) => self.user(user),
                TestStmt::Claim(claim) => {
                    self.claim(claim, Some(&users));
                }
                TestStmt::Expect(expect) => self.expectation(expect, &claims),
                TestStmt::Error => {}
            }
        }
    }

    fn expectation(&mut self, expect: &Expect, claims: &HashMap<SmolStr, Span>) {
        match expect {
            Expect::Claim(e) => {
                self.test_claim(&e.claim, claims);
                if let ClaimOutcome::Rejected { pattern: Some(pattern) } = &e.outcome.node
                    && let Some(text) = self.c.plain(pattern, "a `matches` pattern")
                {
                    self.c.regex(&text, pattern.span);
                }
            }
            Expect::Instance(e) => {
                let service = self.test_component(&e.component);
                self.test_claim(&e.claim, claims);
                let values = Env { roots: Roots::CONSTANT, place: "an expected value", components: None };
                for stmt in e.body.iter().flat_map(|b| &b.stmts) {
                    match &stmt.node {
                        InstanceStmt::Context(context) => {
                            if let Some(service) = &service {
                                self.test_context(service, context);
                            }
                        }
                        InstanceStmt::Cluster(cluster) => {
                            self.reference(Kind::Cluster, &cluster.segments, cluster.span);
                        }
                        InstanceStmt::Namespace(lit) => {
                            self.c.plain(lit, "an expected Kubernetes namespace");
                        }
                        InstanceStmt::Values(map) => {
                            for entry in &map.entries {
                                if let MapKey::Str(key) = &entry.key {
                                    self.c.plain(key, "a key of expected values");
                                }
                                self.c.expr(&entry.value, &values);
                            }
                        }
                        InstanceStmt::Error => {}
                    }
                }
            }
            Expect::NoInstance(e) => {
                self.test_component(&e.component);
                self.test_claim(&e.claim, claims);
            }
            Expect::Instances(_) => {}
        }
    }

    /// A claim named by an expectation: one of the test's own, or a claim of the policy.
    fn test_claim(&mut self, path: &Path, own: &HashMap<SmolStr, Span>) {
        let namespace = self.namespace();
        let index = self.c.scope.index;
        match path.segments.as_slice() {
            [name] => {
                if own.contains_key(&name.text) || index.has(Kind::Claim, &namespace, &name.text) {
                    return;
                }
                let candidates: Vec<&SmolStr> = own.keys().chain(index.names_in(Kind::Claim, &namespace)).collect();
                let help = did_you_mean(&closest(&name.text, candidates.into_iter())).unwrap_or_else(|| {
                    format!(
                        "declare the claim in the test, or name a claim of namespace `{namespace}` (claims of other namespaces are written `ns.name`)"
                    )
                });
                self.c.report(
                    Diagnostic::new(
                        codes::UNRESOLVED_NAME,
                        self.c.file,
                        path.span,
                        format!("no claim named `{}` in this test or in namespace `{namespace}`", name.text),
                    )
                    .with_primary_message("unknown claim")
                    .with_help(help),
                );
            }
            [qualifier, name] if qualifier.text == namespace && own.contains_key(&name.text) => {}
            segments => {
                self.reference(Kind::Claim, segments, path.span);
            }
        }
    }

    /// `SERVICE.COMPONENT` (or `NAMESPACE.SERVICE.COMPONENT`): the service, if it resolves.
    fn test_component(&mut self, path: &Path) -> Option<ObjectRef> {
        let (component, service) = path.segments.split_last()?;
        let (Some(first), Some(last)) = (service.first(), service.last()) else {
            self.c.report(
                Diagnostic::new(
                    codes::UNRESOLVED_NAME,
                    self.c.file,
                    path.span,
                    format!("`{}` names no component", component.text),
                )
                .with_primary_message("a service is missing")
                .with_help("name a component with its service: `SERVICE.COMPONENT`".to_string()),
            );
            return None;
        };
        let service = self.reference(Kind::Service, service, first.span.to(last.span))?;
        let index = self.c.scope.index;
        let components = index.components.get(&(service.namespace.clone(), service.name.clone()));
        let components: Vec<&SmolStr> = components.into_iter().flatten().collect();
        if !components.contains(&&component.text) {
            let listed: Vec<String> = components.iter().map(|c| format!("`{c}`")).collect();
            let help = did_you_mean(&closest(&component.text, components.iter().copied())).unwrap_or_else(|| {
                if listed.is_empty() {
                    format!("service `{service}` has no components")
                } else {
                    format!("the components of `{service}` are {}", listed.join(", "))
                }
            });
            self.c.report(
                Diagnostic::new(
                    codes::UNRESOLVED_NAME,
                    self.c.file,
                    component.span,
                    format!("service `{service}` has no component `{}`", component.text),
                )
                .with_primary_message("unknown component")
                .with_help(help),
            );
        }
        Some(service)
    }

    /// The context of an expected instance: a context that `use`s the instance's service.
    fn test_context(&mut self, service: &ObjectRef, context: &Ident) {
        let index = self.c.scope.index;
        let contexts = index.service_contexts.get(&(service.namespace.clone(), service.name.clone()));
        let contexts: Vec<&SmolStr> = contexts.into_iter().flatten().collect();
        if contexts.contains(&&context.text) {
            return;
        }
        let listed: Vec<String> = contexts.iter().map(|c| format!("`{c}`")).collect();
        let help = did_you_mean(&closest(&context.text, contexts.iter().copied())).unwrap_or_else(|| {
            if listed.is_empty() {
                format!("no context uses service `{service}`, so no claim can get an instance of it")
            } else {
                format!("the contexts that use `{service}` are {}", listed.join(", "))
            }
        });
        self.c.report(
            Diagnostic::new(
                codes::UNRESOLVED_NAME,
                self.c.file,
                context.span,
                format!("no context that uses service `{service}` is named `{}`", context.text),
            )
            .with_primary_message("unknown context")
            .with_help(help),
        );
    }

    fn user(&mut self, user: &User) {
        self.c.plain(&user.name, "a user name");
        let env = Env { roots: Roots::CONSTANT, place: "a user's groups", components: None };
        for stmt in user.body.iter().flat_map(|b| &b.stmts) {
            match &stmt.node {
                UserStmt::Team(team) => {
                    self.reference(Kind::Team, std::slice::from_ref(team), team.span);
                }
                UserStmt::Groups(groups) => {
                    for group in groups {
                        self.c.expect(group, &env, &Ty::String, "a group");
                        if let ExprKind::Str(lit) = &group.kind {
                            self.c.plain(lit, "a group");
                        }
                    }
                }
                UserStmt::Labels(map) => self.label_map(map, "a user's labels"),
                UserStmt::Error => {}
            }
        }
    }

    fn grant(&mut self, grant: &Grant) {
        if let Some(scope) = &grant.scope
            && let GrantScope::Namespaces(namespaces) = &scope.node
        {
            if grant.role.text == "domain_admin" {
                self.c.report(
                    Diagnostic::new(
                        codes::CONFLICTING_STATEMENTS,
                        self.c.file,
                        scope.span,
                        "`domain_admin` covers every namespace; it takes no `on` list",
                    )
                    .with_primary_message("not allowed for domain_admin")
                    .with_help("remove the `on …` part, or grant `namespace_admin` on those namespaces".to_string()),
                );
            }
            let index = self.c.scope.index;
            for namespace in namespaces {
                if !index.namespaces.contains_key(&namespace.text) {
                    let help = did_you_mean(&closest(&namespace.text, index.namespaces.keys()))
                        .unwrap_or_else(|| "grants name namespaces that some file declares".to_string());
                    self.c.report(
                        Diagnostic::new(
                            codes::UNRESOLVED_NAME,
                            self.c.file,
                            namespace.span,
                            format!("there is no namespace `{}`", namespace.text),
                        )
                        .with_primary_message("unknown namespace")
                        .with_help(help),
                    );
                }
            }
        }
        if let Some(criteria) = &grant.criteria {
            let env = Env { roots: Roots::GRANT, place: "a grant's criteria", components: None };
            self.c.condition(criteria, &env, "a grant's `when`");
        }
    }
}

/// An enum label's variants, the values earlier contexts cover, and where.
type Coverage = (Vec<SmolStr>, BTreeSet<SmolStr>, Vec<Span>);

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

/// One cycle per strongly connected component of `graph` that has one, each in order from
/// its smallest node. Linear in the graph (Tarjan), so it scales to whole policies.
pub fn cycles<K: Ord + Clone>(graph: &BTreeMap<K, Vec<K>>) -> Vec<Vec<K>> {
    struct Tarjan<'g, K> {
        graph: &'g BTreeMap<K, Vec<K>>,
        index: BTreeMap<&'g K, (usize, usize)>,
        stack: Vec<&'g K>,
        on_stack: BTreeSet<&'g K>,
        components: Vec<Vec<&'g K>>,
    }
    impl<'g, K: Ord> Tarjan<'g, K> {
        fn visit(&mut self, node: &'g K) {
            let n = self.index.len();
            self.index.insert(node, (n, n));
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.index[next].1;
                    let entry = self.index.get_mut(node).expect("visited");
                    entry.1 = entry.1.min(low);
                } else if self.on_stack.contains(next) {
                    let low = self.index[next].0;
                    let entry = self.index.get_mut(node).expect("visited");
                    entry.1 = entry.1.min(low);
                }
            }
            let (number, low) = self.index[node];
            if number == low {
                let mut component = Vec::new();
                while let Some(member) = self.stack.pop() {
                    self.on_stack.remove(member);
                    component.push(member);
                    if member == node {
                        break;
                    }
                }
                self.components.push(component);
            }
        }
    }
    let mut tarjan =
        Tarjan { graph, index: BTreeMap::new(), stack: Vec::new(), on_stack: BTreeSet::new(), components: Vec::new() };
    for node in graph.keys() {
        if !tarjan.index.contains_key(node) {
            tarjan.visit(node);
        }
    }
    let mut found = Vec::new();
    for component in tarjan.components {
        let members: BTreeSet<&K> = component.iter().copied().collect();
        let start = *members.first().expect("components are not empty");
        let self_loop = graph.get(start).is_some_and(|next| next.contains(start));
        if members.len() == 1 && !self_loop {
            continue;
        }
        // A path from `start` back to it, inside the component.
        let mut path = vec![start];
        let mut seen = BTreeSet::from([start]);
        while let Some(next) =
            graph[path[path.len() - 1]].iter().find(|n| members.contains(n) && (*n == start || !seen.contains(n)))
        {
            if next == start {
                break;
            }
            seen.insert(next);
            path.push(next);
        }
        found.push(path.into_iter().cloned().collect());
    }
    found.sort();
    found
}

fn strip(expr: &Expr) -> &Expr {
    match &expr.kind {
        ExprKind::Paren(inner) => strip(inner),
        _ => expr,
    }
}

fn flatten_and<'e>(expr: &'e Expr, out: &mut Vec<&'e Expr>) {
    match &strip(expr).kind {
        ExprKind::Binary { op: BinaryOp::And, lhs, rhs } => {
            flatten_and(lhs, out);
            flatten_and(rhs, out);
        }
        _ => out.push(strip(expr)),
    }
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
