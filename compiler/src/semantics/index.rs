//! What each file declares, and the index of every declaration of the workspace.
//!
//! A [`FileSummary`] holds a file's names, label schema, imports and function signatures,
//! but no spans and no bodies: editing inside a service leaves it equal, so salsa stops the
//! change there and the other files' checks are not re-run. [`Index`] merges the summaries.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::db::{SourceText, Workspace, parse_file};
use crate::source::FileId;
use crate::syntax::ast::*;

use super::types::{Signature, Ty};

/// Kinds of named object that references can point at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Label,
    Service,
    Contract,
    Cluster,
    Rule,
    Claim,
    Team,
    User,
    /// A `test` block; tests are unique per namespace.
    Test,
    /// An `assert` block; assertions are unique per namespace.
    Assert,
}

impl Kind {
    /// The keyword that declares this kind, for messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Label => "label",
            Kind::Service => "service",
            Kind::Contract => "contract",
            Kind::Cluster => "cluster",
            Kind::Rule => "rule",
            Kind::Claim => "claim",
            Kind::Team => "team",
            Kind::User => "user",
            Kind::Test => "test",
            Kind::Assert => "assert",
        }
    }

    /// Whether objects of this kind live in one global space rather than per namespace.
    pub fn is_global(self) -> bool {
        matches!(self, Kind::Team | Kind::User)
    }
}

/// A declared label: its type and whether it has a default.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LabelSchema {
    pub ty: Ty,
    pub has_default: bool,
}

/// An `import` as written, without spans.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ImportSummary {
    pub namespace: SmolStr,
    /// `None` for `import ns` and `import ns as alias`; the imported names otherwise.
    pub members: Option<Vec<SmolStr>>,
    pub alias: Option<SmolStr>,
}

/// The outline of one file that other files may depend on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileSummary {
    pub namespace: Option<SmolStr>,
    pub owner: Option<SmolStr>,
    pub imports: Vec<ImportSummary>,
    /// Objects in declaration order. Users are stored lower-cased (names compare so).
    pub objects: Vec<(Kind, SmolStr)>,
    pub labels: Vec<(SmolStr, LabelSchema)>,
    pub functions: Vec<(SmolStr, Signature)>,
    /// Discovery keys each service publishes (the union of its components' `discovery`).
    pub published: Vec<(SmolStr, Vec<SmolStr>)>,
    /// The services each contract's contexts `use` (as written: names in the contract's namespace).
    pub contract_services: Vec<(SmolStr, Vec<SmolStr>)>,
    /// The components of each service, in declaration order.
    pub components: Vec<(SmolStr, Vec<SmolStr>)>,
    /// Services with a statement the parser skipped (in the body or a component's): their
    /// components and published keys are only what parsed, so checks that would report a name
    /// missing from them stay quiet (the parse error is the one to fix).
    pub incomplete: Vec<SmolStr>,
    /// The contexts (of any contract of the file) that `use` each service, sorted.
    pub service_contexts: Vec<(SmolStr, Vec<SmolStr>)>,
}

/// The outline of `file`.
#[salsa::tracked(returns(ref))]
pub fn file_summary(db: &dyn salsa::Database, file: SourceText) -> FileSummary {
    summarize(&parse_file(db, file).file)
}

fn summarize(file: &SourceFile) -> FileSummary {
    let mut summary = FileSummary::default();
    for item in &file.items {
        match &item.kind {
            ItemKind::Namespace(ns) if summary.namespace.is_none() => {
                summary.namespace = Some(ns.name.text.clone());
                summary.owner = ns.owner.as_ref().map(|o| o.text.clone());
            }
            ItemKind::Import(import) => {
                if let Some(first) = import.path.segments.first() {
                    let mut members = import.members.as_ref().map(|m| m.iter().map(|i| i.text.clone()).collect());
                    if import.path.segments.len() == 2 && members.is_none() {
                        members = Some(vec![import.path.segments[1].text.clone()]);
                    }
                    summary.imports.push(ImportSummary {
                        namespace: first.text.clone(),
                        members,
                        alias: import.alias.as_ref().map(|a| a.text.clone()),
                    });
                }
            }
            ItemKind::Label(label) => {
                let ty = Ty::from_syntax(&label.ty).unwrap_or(Ty::Unknown);
                summary.objects.push((Kind::Label, label.name.text.clone()));
                summary
                    .labels
                    .push((label.name.text.clone(), LabelSchema { ty, has_default: label.default.is_some() }));
            }
            ItemKind::Service(service) => {
                summary.objects.push((Kind::Service, service.name.text.clone()));
                summary.published.push((service.name.text.clone(), published_keys(service)));
                let components = service.body.stmts.iter().filter_map(|stmt| match &stmt.node {
                    ServiceStmt::Component(c) => Some(c.name.text.clone()),
                    ServiceStmt::Error => None,
                });
                summary.components.push((service.name.text.clone(), components.collect()));
                if is_incomplete(service) {
                    summary.incomplete.push(service.name.text.clone());
                }
            }
            ItemKind::Contract(c) => {
                summary.objects.push((Kind::Contract, c.name.text.clone()));
                summary.contract_services.push((c.name.text.clone(), used_services(c)));
                for (context, service) in context_services(c) {
                    match summary.service_contexts.iter_mut().find(|(s, _)| *s == service) {
                        Some((_, contexts)) => contexts.push(context),
                        None => summary.service_contexts.push((service, vec![context])),
                    }
                }
            }
            // The test's own claims and users are not objects of the namespace: only the
            // test sees them (semantics::file checks them).
            ItemKind::Test(t) => summary.objects.push((Kind::Test, t.name.text.clone())),
            ItemKind::Assert(a) => summary.objects.push((Kind::Assert, a.name.text.clone())),
            ItemKind::Rule(r) => summary.objects.push((Kind::Rule, r.name.text.clone())),
            ItemKind::Cluster(c) => summary.objects.push((Kind::Cluster, c.name.text.clone())),
            ItemKind::Claim(c) => summary.objects.push((Kind::Claim, c.name.text.clone())),
            ItemKind::Team(t) => summary.objects.push((Kind::Team, t.name.text.clone())),
            ItemKind::User(u) => {
                if let Some(name) = u.name.as_plain() {
                    summary.objects.push((Kind::User, SmolStr::new(name.to_lowercase())));
                }
            }
            ItemKind::Function(f) => {
                let params =
                    f.params.iter().map(|p| (p.name.text.clone(), Ty::from_syntax(&p.ty).unwrap_or(Ty::Unknown)));
                let ret = Ty::from_syntax(&f.ret).unwrap_or(Ty::Unknown);
                summary.functions.push((f.name.text.clone(), Signature { params: params.collect(), ret }));
            }
            _ => {}
        }
    }
    for (_, contexts) in &mut summary.service_contexts {
        contexts.sort();
        contexts.dedup();
    }
    summary
}

/// (context, service) for every `use` of a context of `contract`.
fn context_services(contract: &Contract) -> Vec<(SmolStr, SmolStr)> {
    let contexts = contract.body.stmts.iter().filter_map(|stmt| match &stmt.node {
        ContractStmt::Context(context) => Some(context),
        _ => None,
    });
    contexts
        .flat_map(|c| {
            c.body.stmts.iter().filter_map(|stmt| match &stmt.node {
                ContextStmt::Use(path) => Some((c.name.text.clone(), path.segments.last()?.text.clone())),
                _ => None,
            })
        })
        .collect()
}

/// Whether the parser skipped a statement of `service`: one of its body's, or of a component's.
pub fn is_incomplete(service: &Service) -> bool {
    service.body.stmts.iter().any(|stmt| match &stmt.node {
        ServiceStmt::Error => true,
        ServiceStmt::Component(c) => component_is_incomplete(c),
    })
}

/// Whether the parser skipped a statement of `component`'s body.
pub fn component_is_incomplete(component: &Component) -> bool {
    component.body.iter().flat_map(|b| &b.stmts).any(|stmt| matches!(stmt.node, ComponentStmt::Error))
}

fn published_keys(service: &Service) -> Vec<SmolStr> {
    let mut keys: Vec<SmolStr> = service
        .body
        .stmts
        .iter()
        .filter_map(|stmt| match &stmt.node {
            ServiceStmt::Component(c) => c.body.as_ref(),
            ServiceStmt::Error => None,
        })
        .flat_map(|body| &body.stmts)
        .filter_map(|stmt| match &stmt.node {
            ComponentStmt::Discovery(map) => Some(map),
            _ => None,
        })
        .flat_map(|map| &map.entries)
        .filter_map(|entry| map_key_text(&entry.key))
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

fn used_services(contract: &Contract) -> Vec<SmolStr> {
    let contexts = contract.body.stmts.iter().filter_map(|stmt| match &stmt.node {
        ContractStmt::Context(context) => Some(context),
        _ => None,
    });
    let uses = contexts.flat_map(|c| &c.body.stmts).filter_map(|stmt| match &stmt.node {
        ContextStmt::Use(path) => path.segments.last().map(|s| s.text.clone()),
        _ => None,
    });
    let mut services: Vec<SmolStr> = uses.collect();
    services.sort();
    services.dedup();
    services
}

/// The text of a map key, if it has no interpolation.
pub fn map_key_text(key: &MapKey) -> Option<SmolStr> {
    match key {
        MapKey::Name(ident) => Some(ident.text.clone()),
        MapKey::Str(lit) => lit.as_plain().map(SmolStr::new),
    }
}

/// A reference to an object of a namespace (or, for teams and users, of the policy).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: Kind,
    /// Empty for global kinds.
    pub namespace: SmolStr,
    pub name: SmolStr,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{}", self.name)
        } else {
            write!(f, "{}.{}", self.namespace, self.name)
        }
    }
}

/// One namespace: the files that contribute to it and its owner.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub files: Vec<FileId>,
    pub owner: Option<SmolStr>,
}

/// Every declaration of the workspace, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Index {
    pub namespaces: BTreeMap<SmolStr, NamespaceInfo>,
    /// Every object, with the files that declare it (more than one is a duplicate).
    pub objects: BTreeMap<ObjectRef, Vec<FileId>>,
    pub labels: BTreeMap<(SmolStr, SmolStr), LabelSchema>,
    pub functions: BTreeMap<SmolStr, Signature>,
    pub published: HashMap<(SmolStr, SmolStr), Vec<SmolStr>>,
    /// (namespace, contract) → the services of that namespace its contexts use.
    pub contract_services: HashMap<(SmolStr, SmolStr), Vec<SmolStr>>,
    /// (namespace, service) → its components, in declaration order.
    pub components: HashMap<(SmolStr, SmolStr), Vec<SmolStr>>,
    /// (namespace, service) of the services the parser skipped a statement of
    /// ([`FileSummary::incomplete`]).
    pub incomplete: HashSet<(SmolStr, SmolStr)>,
    /// (namespace, service) → the names of the contexts that `use` it.
    pub service_contexts: HashMap<(SmolStr, SmolStr), Vec<SmolStr>>,
    /// File → its namespace and imports, for resolving names of any file.
    pub files: HashMap<FileId, (SmolStr, Vec<ImportSummary>)>,
}

impl Index {
    /// Whether the object exists.
    pub fn has(&self, kind: Kind, namespace: &str, name: &str) -> bool {
        let namespace = if kind.is_global() { "" } else { namespace };
        self.objects.contains_key(&ObjectRef { kind, namespace: namespace.into(), name: name.into() })
    }

    /// Names of the objects of `kind` in `namespace`.
    pub fn names_in<'a>(&'a self, kind: Kind, namespace: &'a str) -> impl Iterator<Item = &'a SmolStr> + 'a {
        self.objects.keys().filter(move |o| o.kind == kind && o.namespace == namespace).map(|o| &o.name)
    }
}

/// The index of every file of the workspace.
#[salsa::tracked(returns(ref))]
pub fn workspace_index(db: &dyn salsa::Database, ws: Workspace) -> Index {
    let mut index = Index::default();
    for &file in ws.files(db) {
        let summary = file_summary(db, file);
        let Some(namespace) = summary.namespace.clone() else { continue };
        let id = file.id(db);
        let info = index.namespaces.entry(namespace.clone()).or_default();
        info.files.push(id);
        if info.owner.is_none() {
            info.owner = summary.owner.clone();
        }
        index.files.insert(id, (namespace.clone(), summary.imports.clone()));
        for (kind, name) in &summary.objects {
            let ns = if kind.is_global() { SmolStr::default() } else { namespace.clone() };
            index.objects.entry(ObjectRef { kind: *kind, namespace: ns, name: name.clone() }).or_default().push(id);
        }
        for (key, schema) in &summary.labels {
            index.labels.entry((namespace.clone(), key.clone())).or_insert_with(|| schema.clone());
        }
        // Only the standard library defines functions (a `fn` elsewhere is APT0106).
        let functions =
            if namespace == crate::syntax::validate::STD_NAMESPACE { summary.functions.as_slice() } else { &[] };
        for (name, signature) in functions {
            index.functions.entry(name.clone()).or_insert_with(|| signature.clone());
        }
        for (service, keys) in &summary.published {
            index.published.insert((namespace.clone(), service.clone()), keys.clone());
        }
        for (contract, services) in &summary.contract_services {
            index.contract_services.insert((namespace.clone(), contract.clone()), services.clone());
        }
        for (service, components) in &summary.components {
            index.components.entry((namespace.clone(), service.clone())).or_insert_with(|| components.clone());
        }
        for service in &summary.incomplete {
            index.incomplete.insert((namespace.clone(), service.clone()));
        }
        for (service, contexts) in &summary.service_contexts {
            let all = index.service_contexts.entry((namespace.clone(), service.clone())).or_default();
            all.extend(contexts.iter().cloned());
            all.sort();
            all.dedup();
        }
    }
    for user in super::users::external_users(db, ws) {
        let object =
            ObjectRef { kind: Kind::User, namespace: SmolStr::default(), name: user.name.to_lowercase().into() };
        index.objects.entry(object).or_default().push(user.declared_in.0);
    }
    index
}
