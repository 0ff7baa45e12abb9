//! Every name written in a file, resolved: what each identifier declares or refers to.
//!
//! This is the table behind go-to-definition, find-references, rename, hover and semantic
//! tokens. It resolves names exactly as the checker does ([`Scope::resolve`]); a name that
//! does not resolve is left out (the checker reports it).

use crate::db::{SourceText, Workspace, parse_file};
use crate::semantics::index::{Index, Kind, ObjectRef, file_summary, workspace_index};
use crate::semantics::scope::{Lookup, Scope};
use crate::syntax::ast::*;
use crate::syntax::validate::STD_NAMESPACE;

/// What a name stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    /// A named object of a namespace (or, for teams and users, of the policy).
    Object(ObjectRef),
    /// A namespace.
    Namespace(SmolStr),
    /// A component of a service.
    Component { service: ObjectRef, name: SmolStr },
    /// A context of a contract.
    Context { contract: ObjectRef, name: SmolStr },
    /// A standard-library function.
    Function(SmolStr),
    /// A claim or user declared in a `test` block (`kind` is `Claim` or `User`): it exists
    /// only while that test runs, so it belongs to the test, not to its namespace, and two
    /// tests may each declare one of the same name.
    Local { test: ObjectRef, kind: Kind, name: SmolStr },
}

impl Target {
    /// "contract `platform.kafka`", for messages.
    pub fn describe(&self) -> String {
        match self {
            Target::Object(object) => format!("{} `{object}`", object.kind.as_str()),
            Target::Namespace(name) => format!("namespace `{name}`"),
            Target::Component { service, name } => format!("component `{name}` of service `{service}`"),
            Target::Context { contract, name } => format!("context `{name}` of contract `{contract}`"),
            Target::Function(name) => format!("function `{name}`"),
            Target::Local { test, kind, name } => format!("{} `{name}` of test `{test}`", kind.as_str()),
        }
    }

    /// The name as declared.
    pub fn name(&self) -> &SmolStr {
        match self {
            Target::Object(object) => &object.name,
            Target::Namespace(name) | Target::Function(name) => name,
            Target::Component { name, .. } | Target::Context { name, .. } | Target::Local { name, .. } => name,
        }
    }
}

/// Whether an occurrence declares its target or refers to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Definition,
    Reference,
}

/// One resolved name in a file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Occurrence {
    /// The name itself (for a quoted map key or user name: the text between the quotes).
    pub span: Span,
    pub target: Target,
    pub role: Role,
}

/// Every resolved name of `file`, sorted by position.
#[salsa::tracked(returns(ref))]
pub fn file_occurrences(db: &dyn salsa::Database, ws: Workspace, file: SourceText) -> Vec<Occurrence> {
    let index = workspace_index(db, ws);
    let summary = file_summary(db, file);
    let parse = parse_file(db, file);
    let namespace = summary.namespace.clone().unwrap_or_default();
    let scope = Scope::new(index, &namespace, &summary.imports);
    let mut collector = Collector { scope, text: file.text(db), service: None, test: None, out: Vec::new() };
    for item in &parse.file.items {
        collector.item(item);
    }
    let mut out = collector.out;
    out.sort_by_key(|o| (o.span.start, o.span.end));
    out.dedup();
    out
}

struct Collector<'a> {
    scope: Scope<'a>,
    text: &'a str,
    /// The service being walked and its components, for `after` and `C.discovery.KEY`.
    service: Option<(ObjectRef, Vec<SmolStr>)>,
    /// The test being walked, and the claims and users (lower-cased) it declares.
    test: Option<LocalNames>,
    out: Vec<Occurrence>,
}

/// The claims and users a test declares, which its statements see before the policy's.
struct LocalNames {
    test: ObjectRef,
    claims: Vec<SmolStr>,
    users: Vec<SmolStr>,
}

impl Collector<'_> {
    fn index(&self) -> &Index {
        self.scope.index
    }

    fn push(&mut self, span: Span, target: Target, role: Role) {
        self.out.push(Occurrence { span, target, role });
    }

    fn object(&self, kind: Kind, name: &SmolStr) -> ObjectRef {
        let namespace = if kind.is_global() { SmolStr::default() } else { self.scope.namespace.clone() };
        ObjectRef { kind, namespace, name: name.clone() }
    }

    fn define(&mut self, kind: Kind, name: &Ident) -> ObjectRef {
        let object = self.object(kind, &name.text);
        self.push(name.span, Target::Object(object.clone()), Role::Definition);
        object
    }

    /// A reference written as `name` or `qualifier.name`.
    fn reference(&mut self, kind: Kind, segments: &[Ident]) -> Option<ObjectRef> {
        let texts: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
        if let [qualifier, _] = segments {
            self.qualifier(qualifier);
        }
        if segments.len() > 2 {
            return None;
        }
        let Lookup::Found(object, _) = self.scope.resolve(kind, &texts) else { return None };
        let last = segments.last()?;
        self.push(last.span, Target::Object(object.clone()), Role::Reference);
        Some(object)
    }

    /// The first segment of a qualified name: a namespace, or the alias of one.
    fn qualifier(&mut self, ident: &Ident) {
        let aliased = self
            .scope
            .imports
            .iter()
            .find(|import| import.members.is_none() && import.alias.as_deref() == Some(ident.text.as_str()));
        if let Some(import) = aliased {
            let namespace = import.namespace.clone();
            self.push(ident.span, Target::Namespace(namespace), Role::Reference);
        } else if self.index().namespaces.contains_key(&ident.text) {
            self.push(ident.span, Target::Namespace(ident.text.clone()), Role::Reference);
        }
    }

    fn namespace_ref(&mut self, ident: &Ident) {
        if self.index().namespaces.contains_key(&ident.text) {
            self.push(ident.span, Target::Namespace(ident.text.clone()), Role::Reference);
        }
    }

    fn label(&mut self, key: &Ident) {
        if let Lookup::Found(label, _) = self.scope.resolve(Kind::Label, &[key.text.as_str()]) {
            self.push(key.span, Target::Object(label), Role::Reference);
        }
    }

    /// A plain string literal's text and the span between its quotes, when the source is
    /// exactly `"text"` (no escapes), so that an edit of that span renames it.
    fn quoted(&self, lit: &StrLit) -> Option<Ident> {
        let text = lit.as_plain()?;
        let inner = Span { start: lit.span.start + 1, end: lit.span.end.saturating_sub(1) };
        (inner.start <= inner.end && self.text.get(inner.range()) == Some(text.as_str()))
            .then(|| Ident { text: text.into(), span: inner })
    }

    fn item(&mut self, item: &Item) {
        match &item.kind {
            ItemKind::Namespace(ns) => {
                self.push(ns.name.span, Target::Namespace(ns.name.text.clone()), Role::Definition);
                if let Some(owner) = &ns.owner {
                    self.reference(Kind::Team, std::slice::from_ref(owner));
                }
            }
            ItemKind::Import(import) => self.import(import),
            ItemKind::Label(label) => {
                self.define(Kind::Label, &label.name);
                if let Some(default) = &label.default {
                    self.expr(default);
                }
            }
            ItemKind::Service(service) => self.service(service),
            ItemKind::Contract(contract) => self.contract(contract),
            ItemKind::Rule(rule) => {
                self.define(Kind::Rule, &rule.name);
                if let Some(criteria) = &rule.criteria {
                    self.expr(criteria);
                }
                for stmt in &rule.body.stmts {
                    match &stmt.node {
                        RuleStmt::LabelOp(op) => self.label_op(op),
                        RuleStmt::Reject(message) => self.string(message),
                        RuleStmt::Place { cluster, namespace } => {
                            self.reference(Kind::Cluster, &cluster.segments);
                            if let Some(namespace) = namespace {
                                self.expr(namespace);
                            }
                        }
                        RuleStmt::Error => {}
                    }
                }
            }
            ItemKind::Cluster(cluster) => {
                self.define(Kind::Cluster, &cluster.name);
                for stmt in &cluster.body.stmts {
                    if let ClusterStmt::Labels(map) = &stmt.node {
                        self.label_map(map);
                    }
                }
            }
            ItemKind::Claim(claim) => self.claim(claim),
            ItemKind::User(user) => self.user(user),
            ItemKind::Test(test) => self.test(test),
            ItemKind::Assert(assert) => self.assertion(assert),
            ItemKind::Team(team) => {
                self.define(Kind::Team, &team.name);
                for stmt in team.body.iter().flat_map(|b| &b.stmts) {
                    if let TeamStmt::Labels(map) = &stmt.node {
                        self.label_map(map);
                    }
                }
            }
            ItemKind::Grant(grant) => {
                if let Some(scope) = &grant.scope
                    && let GrantScope::Namespaces(namespaces) = &scope.node
                {
                    namespaces.iter().for_each(|ns| self.namespace_ref(ns));
                }
                if let Some(criteria) = &grant.criteria {
                    self.expr(criteria);
                }
            }
            ItemKind::Function(function) if self.scope.namespace == STD_NAMESPACE => {
                self.push(function.name.span, Target::Function(function.name.text.clone()), Role::Definition);
            }
            _ => {}
        }
    }

    /// A claim, of the policy or (inside a test) of the test.
    fn claim(&mut self, claim: &Claim) {
        match &self.test {
            Some(local) => {
                let target =
                    Target::Local { test: local.test.clone(), kind: Kind::Claim, name: claim.name.text.clone() };
                self.push(claim.name.span, target, Role::Definition);
            }
            None => {
                self.define(Kind::Claim, &claim.name);
            }
        }
        for stmt in &claim.body.stmts {
            match &stmt.node {
                ClaimStmt::User(lit) => self.user_ref(lit),
                ClaimStmt::Team(team) => {
                    self.reference(Kind::Team, std::slice::from_ref(team));
                }
                ClaimStmt::Contract(path) => {
                    self.reference(Kind::Contract, &path.segments);
                }
                ClaimStmt::Labels(map) => self.label_map(map),
                ClaimStmt::Error => {}
            }
        }
    }

    /// A user, of the policy or (inside a test) of the test.
    fn user(&mut self, user: &User) {
        if let Some(name) = self.quoted(&user.name) {
            let key = SmolStr::new(name.text.to_lowercase());
            let target = match &self.test {
                Some(local) => Target::Local { test: local.test.clone(), kind: Kind::User, name: key },
                None => Target::Object(self.object(Kind::User, &key)),
            };
            self.push(name.span, target, Role::Definition);
        }
        for stmt in user.body.iter().flat_map(|b| &b.stmts) {
            match &stmt.node {
                UserStmt::Team(team) => {
                    self.reference(Kind::Team, std::slice::from_ref(team));
                }
                UserStmt::Groups(groups) => groups.iter().for_each(|g| self.expr(g)),
                UserStmt::Labels(map) => self.label_map(map),
                UserStmt::Error => {}
            }
        }
    }

    /// An assertion: its name, and every name its `for`, `when` and `expect` statements use
    /// (docs/language.md §19), resolved as `semantics::file::assertions` checks them.
    fn assertion(&mut self, assert: &AssertBlock) {
        self.define(Kind::Assert, &assert.name);
        for stmt in &assert.body.stmts {
            match &stmt.node {
                AssertStmt::For(clause) => match clause {
                    ForClause::User(lit) => self.user_ref(lit),
                    ForClause::TeamUsers(team) | ForClause::Team(team) => {
                        self.reference(Kind::Team, std::slice::from_ref(team));
                    }
                    ForClause::Group(_) => {}
                    ForClause::Contract(path) => {
                        self.reference(Kind::Contract, &path.segments);
                    }
                },
                AssertStmt::When(e) => self.expr(e),
                AssertStmt::Expect(a) => match &a.node {
                    Assertion::PlacedOn(clusters) => {
                        for cluster in clusters {
                            self.reference(Kind::Cluster, &cluster.segments);
                        }
                    }
                    Assertion::Reaches { target, .. } => {
                        let texts: Vec<&str> = target.segments.iter().map(|s| s.text.as_str()).collect();
                        if matches!(self.scope.resolve(Kind::Contract, &texts), Lookup::Found(..)) {
                            self.reference(Kind::Contract, &target.segments);
                        } else if matches!(self.scope.resolve(Kind::Service, &texts), Lookup::Found(..)) {
                            self.reference(Kind::Service, &target.segments);
                        } else {
                            self.test_component(target);
                        }
                    }
                    Assertion::Shares { with: Party::User(lit), .. } => self.user_ref(lit),
                    Assertion::Shares { with: Party::Team(team), .. } => {
                        self.reference(Kind::Team, std::slice::from_ref(team));
                    }
                    Assertion::That(e) => self.expr(e),
                    _ => {}
                },
                AssertStmt::Error => {}
            }
        }
    }

    /// A test: its own claims and users, and every name its expectations use
    /// (docs/language.md §18), resolved as `semantics::file::test_blocks` checks them.
    fn test(&mut self, test: &TestBlock) {
        let me = self.define(Kind::Test, &test.name);
        let mut local = LocalNames { test: me, claims: Vec::new(), users: Vec::new() };
        for stmt in &test.body.stmts {
            match &stmt.node {
                TestStmt::Claim(claim) => local.claims.push(claim.name.text.clone()),
                TestStmt::User(user) => {
                    if let Some(name) = user.name.as_plain() {
                        local.users.push(SmolStr::new(name.to_lowercase()));
                    }
                }
                _ => {}
            }
        }
        self.test = Some(local);
        for stmt in &test.body.stmts {
            match &stmt.node {
                TestStmt::Claim(claim) => self.claim(claim),
                TestStmt::User(user) => self.user(user),
                TestStmt::Expect(expect) => self.expect(expect),
                TestStmt::Error => {}
            }
        }
        self.test = None;
    }

    fn expect(&mut self, expect: &Expect) {
        match expect {
            Expect::Claim(e) => self.test_claim(&e.claim),
            Expect::Instance(e) => {
                let service = self.test_component(&e.component);
                self.test_claim(&e.claim);
                for stmt in e.body.iter().flat_map(|b| &b.stmts) {
                    match &stmt.node {
                        InstanceStmt::Context(context) => {
                            if let Some(service) = &service {
                                self.test_context(service, context);
                            }
                        }
                        InstanceStmt::Cluster(cluster) => {
                            self.reference(Kind::Cluster, &cluster.segments);
                        }
                        InstanceStmt::Values(map) => self.map(map),
                        InstanceStmt::Namespace(_) | InstanceStmt::Error => {}
                    }
                }
            }
            Expect::NoInstance(e) => {
                self.test_component(&e.component);
                self.test_claim(&e.claim);
            }
            Expect::Instances(_) => {}
        }
    }

    /// The claim of an expectation: the test's own (`name`, or `namespace.name` for the test's
    /// namespace), else a claim of the policy.
    fn test_claim(&mut self, path: &Path) {
        let Some(local) = &self.test else { return };
        let (test, own) = (local.test.clone(), &local.claims);
        let last = match path.segments.as_slice() {
            [name] => Some(name),
            [qualifier, name] if qualifier.text == *self.scope.namespace => Some(name),
            _ => None,
        };
        if let Some(name) = last.filter(|name| own.contains(&name.text)) {
            if let [qualifier, _] = path.segments.as_slice() {
                self.qualifier(qualifier);
            }
            let target = Target::Local { test, kind: Kind::Claim, name: name.text.clone() };
            self.push(name.span, target, Role::Reference);
            return;
        }
        self.reference(Kind::Claim, &path.segments);
    }

    /// `SERVICE.COMPONENT` or `NAMESPACE.SERVICE.COMPONENT`: the service, if it resolves.
    fn test_component(&mut self, path: &Path) -> Option<ObjectRef> {
        let (component, service) = path.segments.split_last()?;
        if service.is_empty() {
            return None;
        }
        let service = self.reference(Kind::Service, service)?;
        let key = (service.namespace.clone(), service.name.clone());
        if self.index().components.get(&key).is_some_and(|names| names.contains(&component.text)) {
            let target = Target::Component { service: service.clone(), name: component.text.clone() };
            self.push(component.span, target, Role::Reference);
        }
        Some(service)
    }

    /// The `context` of an expected instance: a context that uses the instance's service. It
    /// resolves when one contract of the service's namespace uses the service (otherwise the
    /// name does not say whose context it is).
    fn test_context(&mut self, service: &ObjectRef, context: &Ident) {
        let index = self.index();
        let key = (service.namespace.clone(), service.name.clone());
        if !index.service_contexts.get(&key).is_some_and(|names| names.contains(&context.text)) {
            return;
        }
        let mut contracts = index
            .contract_services
            .iter()
            .filter(|((namespace, _), services)| *namespace == service.namespace && services.contains(&service.name))
            .map(|((namespace, name), _)| ObjectRef {
                kind: Kind::Contract,
                namespace: namespace.clone(),
                name: name.clone(),
            });
        let (Some(contract), None) = (contracts.next(), contracts.next()) else { return };
        self.push(context.span, Target::Context { contract, name: context.text.clone() }, Role::Reference);
    }

    fn import(&mut self, import: &Import) {
        let Some(first) = import.path.segments.first() else { return };
        self.namespace_ref(first);
        let mut members: Vec<&Ident> = import.path.segments.iter().skip(1).take(1).collect();
        if import.path.segments.len() > 2 {
            members.clear();
        }
        members.extend(import.members.iter().flatten());
        let single = members.len() == 1;
        for member in &members {
            let found = self.import_member(&first.text, member);
            if let (Some(alias), true, Some(found)) = (&import.alias, single, found) {
                self.push(alias.span, found, Role::Reference);
            }
        }
        if members.is_empty()
            && let Some(alias) = &import.alias
            && self.index().namespaces.contains_key(&first.text)
        {
            self.push(alias.span, Target::Namespace(first.text.clone()), Role::Reference);
        }
    }

    /// `import ns.name`: every importable object of that name (a contract and a service may
    /// share one).
    fn import_member(&mut self, namespace: &SmolStr, member: &Ident) -> Option<Target> {
        let mut first = None;
        for kind in [Kind::Contract, Kind::Service, Kind::Label, Kind::Cluster] {
            if self.index().has(kind, namespace, &member.text) {
                let target =
                    Target::Object(ObjectRef { kind, namespace: namespace.clone(), name: member.text.clone() });
                first.get_or_insert_with(|| target.clone());
                self.push(member.span, target, Role::Reference);
            }
        }
        first
    }

    fn service(&mut self, service: &Service) {
        let me = self.define(Kind::Service, &service.name);
        let components: Vec<&Component> = service
            .body
            .stmts
            .iter()
            .filter_map(|stmt| match &stmt.node {
                ServiceStmt::Component(component) => Some(component),
                _ => None,
            })
            .collect();
        let names: Vec<SmolStr> = components.iter().map(|c| c.name.text.clone()).collect();
        self.service = Some((me.clone(), names.clone()));
        for component in components {
            let target = Target::Component { service: me.clone(), name: component.name.text.clone() };
            self.push(component.name.span, target, Role::Definition);
            if let ComponentSource::Uses(path) = &component.source.node {
                self.reference(Kind::Contract, &path.segments);
            }
            for stmt in component.body.iter().flat_map(|b| &b.stmts) {
                match &stmt.node {
                    ComponentStmt::After(after) => {
                        for name in after.iter().filter(|n| names.contains(&n.text)) {
                            let target = Target::Component { service: me.clone(), name: name.text.clone() };
                            self.push(name.span, target, Role::Reference);
                        }
                    }
                    ComponentStmt::When(expr) => self.expr(expr),
                    ComponentStmt::Values(map) | ComponentStmt::Discovery(map) => self.map(map),
                    _ => {}
                }
            }
        }
        self.service = None;
    }

    fn contract(&mut self, contract: &Contract) {
        let me = self.define(Kind::Contract, &contract.name);
        for stmt in &contract.body.stmts {
            match &stmt.node {
                ContractStmt::LabelOp(op) => self.label_op(op),
                ContractStmt::Context(context) => {
                    let target = Target::Context { contract: me.clone(), name: context.name.text.clone() };
                    self.push(context.name.span, target, Role::Definition);
                    if let Some(criteria) = &context.criteria {
                        self.expr(criteria);
                    }
                    for stmt in &context.body.stmts {
                        match &stmt.node {
                            ContextStmt::LabelOp(op) => self.label_op(op),
                            ContextStmt::Allocate(keys) => keys.iter().for_each(|k| self.expr(k)),
                            ContextStmt::Use(path) => {
                                self.reference(Kind::Service, &path.segments);
                            }
                            ContextStmt::Error => {}
                        }
                    }
                }
                ContractStmt::Error => {}
            }
        }
    }

    fn label_op(&mut self, op: &LabelOp) {
        match op {
            LabelOp::Set { label, value } => {
                self.label(label);
                self.expr(value);
            }
            LabelOp::Remove { label } => self.label(label),
        }
    }

    /// A `labels { key = value }` map: keys are labels.
    fn label_map(&mut self, map: &MapLit) {
        for entry in &map.entries {
            match &entry.key {
                MapKey::Name(ident) => self.label(ident),
                MapKey::Str(lit) => {
                    if let Some(ident) = self.quoted(lit) {
                        self.label(&ident);
                    }
                }
            }
            self.expr(&entry.value);
        }
    }

    fn map(&mut self, map: &MapLit) {
        for entry in &map.entries {
            if let MapKey::Str(lit) = &entry.key {
                self.string(lit);
            }
            self.expr(&entry.value);
        }
    }

    fn user_ref(&mut self, lit: &StrLit) {
        let Some(name) = self.quoted(lit) else { return };
        if let Some(local) = &self.test {
            let key = SmolStr::new(name.text.to_lowercase());
            if local.users.contains(&key) {
                let target = Target::Local { test: local.test.clone(), kind: Kind::User, name: key };
                self.push(name.span, target, Role::Reference);
                return;
            }
        }
        if let Lookup::Found(user, _) = self.scope.resolve(Kind::User, &[name.text.as_str()]) {
            self.push(name.span, Target::Object(user), Role::Reference);
        }
    }

    fn string(&mut self, lit: &StrLit) {
        for part in &lit.parts {
            if let StrPart::Interp(expr) = part {
                self.expr(expr);
            }
        }
    }

    fn expr(&mut self, expr: &Expr) {
        match &expr.kind {
            ExprKind::Str(lit) => self.string(lit),
            ExprKind::List(items) => items.iter().for_each(|item| self.expr(item)),
            ExprKind::Map(map) => self.map(map),
            ExprKind::Path(path) => self.path(path),
            ExprKind::Call { func, args } => {
                if self.index().functions.contains_key(&func.text) {
                    self.push(func.span, Target::Function(func.text.clone()), Role::Reference);
                }
                args.iter().for_each(|arg| self.expr(arg));
            }
            ExprKind::Unary { expr, .. } | ExprKind::Paren(expr) => self.expr(expr),
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            _ => {}
        }
    }

    fn path(&mut self, path: &Path) {
        let segments = &path.segments;
        let texts: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
        match texts.as_slice() {
            ["labels", _] => self.label(&segments[1]),
            ["user" | "cluster", "labels", _] => self.label(&segments[2]),
            [component, "discovery", ..] => {
                let Some((service, names)) = &self.service else { return };
                if names.iter().any(|n| n == component) {
                    let target = Target::Component { service: service.clone(), name: SmolStr::new(component) };
                    self.push(segments[0].span, target, Role::Reference);
                }
            }
            _ => {}
        }
    }
}
