//! Lowering: a policy that checks clean → [`Program`].
//!
//! Names are resolved with the same [`Scope`] the checker used, so lowering cannot disagree
//! with checking. It refuses a policy with errors: the IR is only ever built from a policy
//! that `aptc check` accepts.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::FastSet;
use crate::db::{ManifestFile, SourceText, Workspace, parse_file};
use crate::semantics::expr::constant;
use crate::semantics::index::{Kind, file_summary, map_key_text, workspace_index};
use crate::semantics::scope::{Lookup, Scope};
use crate::semantics::users;
use crate::syntax::ast::{self, ItemKind};

use aptc_core::intern::Interner;
use aptc_core::ir::*;

/// Lowers a workspace that checks clean (`check::lower` refuses one with errors; the compiler's
/// front door only lowers through it).
pub fn lower_clean(db: &dyn salsa::Database, ws: Workspace) -> Program {
    build(db, ws, Items::All)
}

/// The part of the program roles are computed from (namespaces and their owners, labels, users,
/// teams, grants), lowered as [`lower`] would but from a policy that may have errors: the checker
/// asks `aptc_core::access` the same questions a deploy asks, of the same IR, so `aptc check` and
/// `aptc deploy` cannot disagree on who may do what.
pub fn access_program(db: &dyn salsa::Database, ws: Workspace) -> Program {
    build(db, ws, Items::Access)
}

/// The program the engine's lints read (`aptc_core::verify::lints`): [`lower_clean`]'s, but
/// with only the claims that give some label a value no earlier claim of their file gives it.
/// The lints read claims for nothing but the values they give labels (the classes of each label
/// start from them), so they find the same; lowering every claim of a large policy was a
/// quarter of `aptc check`.
pub fn lints_program(db: &dyn salsa::Database, ws: Workspace) -> Program {
    build(db, ws, Items::Lints)
}

/// Which items [`build`] lowers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Items {
    All,
    /// Only what decides roles (see [`access_program`]).
    Access,
    /// All but claims whose label values are held already (see [`lints_program`]).
    Lints,
}

impl Items {
    fn includes(self, item: &ItemKind) -> bool {
        self != Items::Access || crate::semantics::decides_roles(item)
    }
}

fn build(db: &dyn salsa::Database, ws: Workspace, items: Items) -> Program {
    let mut program = begin(db, ws);
    let mut sharing = Sharing::default();
    for &file in ws.files(db) {
        // A file without an item roles are computed from has nothing for the access program,
        // and its tree (freed by a host that checks file by file) is not asked for again.
        if items == Items::Access && !crate::semantics::file_declarations(db, file).access_items {
            continue;
        }
        lower_file(db, ws, file, || &parse_file(db, file).file, items, &mut program, &mut sharing);
    }
    finish(db, ws, &mut program);
    program
}

/// [`lower_clean`]'s program built a file at a time, for a host that checks and lowers each file
/// while its syntax tree is alive and frees the tree before the next
/// ([`crate::check::lower_file_by_file`]): so each file is parsed once more after loading, not
/// twice, and one tree is held at a time. What it builds is only used if the workspace checks
/// clean (lowering never panics on a policy with errors: [`access_program`] lowers one).
pub(crate) struct FileByFile {
    program: Program,
    sharing: Sharing,
}

impl FileByFile {
    /// An empty program, with room for every claim of the workspace (at 100,000 claims, growing
    /// the claims by doubling held two copies at once).
    pub(crate) fn new(db: &dyn salsa::Database, ws: Workspace) -> FileByFile {
        let mut program = begin(db, ws);
        let claims = ws
            .files(db)
            .iter()
            .flat_map(|&file| &file_summary(db, file).objects)
            .filter(|(kind, _)| *kind == Kind::Claim)
            .count();
        program.claims.reserve_exact(claims);
        FileByFile { program, sharing: Sharing::default() }
    }

    /// Lowers the items of `file`.
    pub(crate) fn file(&mut self, db: &dyn salsa::Database, ws: Workspace, file: SourceText) {
        lower_file(db, ws, file, || &parse_file(db, file).file, Items::All, &mut self.program, &mut self.sharing);
    }

    /// The program, once every file is lowered.
    pub(crate) fn finish(mut self, db: &dyn salsa::Database, ws: Workspace) -> Program {
        finish(db, ws, &mut self.program);
        self.program
    }
}

/// A program with the workspace's namespaces and nothing else yet.
fn begin(db: &dyn salsa::Database, ws: Workspace) -> Program {
    Program {
        format: IR_FORMAT.to_string(),
        version: IR_VERSION,
        compiler: env!("CARGO_PKG_VERSION").to_string(),
        namespaces: workspace_index(db, ws)
            .namespaces
            .iter()
            .map(|(n, info)| (n.to_string(), info.owner.as_ref().map(|o| o.to_string())))
            .collect(),
        ..Program::default()
    }
}

/// Lowers the `items` of one file into `program`; `tree` gives its syntax tree, asked for only
/// when the file has items to lower (not for the prelude). Its claims share the label maps and
/// names of `sharing`, those of the files lowered before it.
fn lower_file<T: std::borrow::Borrow<ast::SourceFile>>(
    db: &dyn salsa::Database,
    ws: Workspace,
    file: SourceText,
    tree: impl FnOnce() -> T,
    items: Items,
    program: &mut Program,
    sharing: &mut Sharing,
) {
    let index = workspace_index(db, ws);
    let summary = file_summary(db, file);
    let Some(namespace) = summary.namespace.as_ref() else { return };
    if namespace == crate::syntax::validate::STD_NAMESPACE {
        return;
    }
    let scope = Scope::new(index, namespace, &summary.imports);
    let manifests: HashMap<&str, &[ManifestFile]> = ws
        .manifests(db)
        .iter()
        .filter(|set| set.declared_in(db) == file.id(db))
        .filter_map(|set| Some((set.glob(db).as_str(), set.files(db).as_deref().ok()?)))
        .collect();
    let lowerer = Lowerer { scope, file: &FileInfo::new(db, file), manifests: &manifests };
    let mut held = FastSet::default();
    let tree = tree();
    let claims = program.claims.len();
    for item in tree.borrow().items.iter().filter(|item| items.includes(&item.kind)) {
        if let (Items::Lints, ItemKind::Claim(claim)) = (items, &item.kind)
            && !gives_new_values(claim, &mut held)
        {
            continue;
        }
        lowerer.item(item, program);
    }
    sharing.share(&mut program.claims[claims..]);
}

/// The distinct label maps, namespaces, contracts and consumers of the claims lowered so far.
#[derive(Default)]
struct Sharing {
    labels: Interner<BTreeMap<String, Value>>,
    names: Interner<str>,
}

impl Sharing {
    /// Makes the claims that write the same labels share one map ([`Claim::labels`]), and those
    /// of one namespace, contract or consumer one string, with each other and with the claims
    /// lowered before: a policy's claims write few distinct maps (a few hundred for 100,000
    /// claims of the engine shape) and name few namespaces, contracts and consumers. Done file by
    /// file, so no file's claims hold a map each at once.
    fn share(&mut self, claims: &mut [Claim]) {
        for claim in claims {
            self.labels.share(&mut claim.labels);
            self.names.share(&mut claim.namespace);
            self.names.share(&mut claim.contract);
            let (Consumer::User(name) | Consumer::Team(name)) = &mut claim.consumer;
            self.names.share(name);
        }
    }
}

/// Adds the users of users files to `program` and puts its rules, claims, tests and assertions
/// in order.
fn finish(db: &dyn salsa::Database, ws: Workspace, program: &mut Program) {
    let index = workspace_index(db, ws);
    for user in users::external_users(db, ws) {
        let (file, _) = user.declared_in;
        let Some(&source) = ws.files(db).iter().find(|f| f.id(db) == file) else { continue };
        let summary = file_summary(db, source);
        let Some(namespace) = summary.namespace.as_ref() else { continue };
        let lowerer = Lowerer {
            scope: Scope::new(index, namespace, &summary.imports),
            file: &FileInfo::new(db, source),
            manifests: &HashMap::new(),
        };
        let labels = user
            .labels
            .iter()
            .filter_map(|(k, v)| {
                let Lookup::Found(label, _) = lowerer.scope.resolve(Kind::Label, &[k.as_str()]) else { return None };
                let ty = index.labels.get(&(label.namespace.clone(), label.name.clone())).map(|s| s.ty.clone());
                let value = ty.map_or_else(|| v.clone(), |ty| users::as_declared(v, &ty));
                Some((label.to_string(), value))
            })
            .collect();
        program.users.entry(user.name.to_lowercase()).or_insert(User {
            name: user.name.clone(),
            team: user.team.as_ref().map(|t| t.to_string()),
            groups: user.groups.clone(),
            labels,
        });
    }
    for rules in program.rules.values_mut() {
        rules.sort_by(|a, b| (a.weight, &a.name).cmp(&(b.weight, &b.name)));
    }
    program.claims.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    // Stable: a namespace's tests stay in file order, then as written.
    program.tests.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    program.assertions.sort_by(|a, b| a.namespace.cmp(&b.namespace));
}

/// Whether `claim` gives a label a value that no claim of `held` gives it (label keys as written,
/// so within one file's scope); if so, its values are added to `held`. The lowered labels are
/// those of the last `labels` map, each key's last entry: a map that names a key twice is
/// always lowered and never added, so `held` only holds values some lowered claim gives.
fn gives_new_values(claim: &ast::Claim, held: &mut FastSet<(ast::SmolStr, Value)>) -> bool {
    let map = claim.body.stmts.iter().rev().find_map(|stmt| match &stmt.node {
        ast::ClaimStmt::Labels(map) => Some(map),
        _ => None,
    });
    let values: Vec<(ast::SmolStr, Value)> = map
        .into_iter()
        .flat_map(|map| &map.entries)
        .filter_map(|entry| Some((map_key_text(&entry.key)?, constant(&entry.value)?)))
        .collect();
    let once = values.iter().enumerate().all(|(i, (key, _))| values[..i].iter().all(|(other, _)| other != key));
    if !once {
        return true;
    }
    if values.iter().all(|value| held.contains(value)) {
        return false;
    }
    held.extend(values);
    true
}

/// A file's path, directory and line starts, for origins.
struct FileInfo {
    path: std::sync::Arc<str>,
    dir: String,
    line_starts: Vec<usize>,
    text: std::sync::Arc<str>,
}

impl FileInfo {
    fn new(db: &dyn salsa::Database, file: SourceText) -> FileInfo {
        let text = file.text(db).clone();
        let line_starts = std::iter::once(0).chain(text.match_indices('\n').map(|(i, _)| i + 1)).collect();
        let path = file.path(db);
        let dir = path.parent().map(|p| p.display().to_string()).unwrap_or_default();
        FileInfo {
            path: path.display().to_string().into(),
            dir: if dir.is_empty() { ".".into() } else { dir },
            line_starts,
            text,
        }
    }

    fn origin(&self, span: ast::Span) -> Origin {
        let offset = (span.start as usize).min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let column = self.text[self.line_starts[line]..offset].chars().count();
        Origin { file: self.path.clone(), line: line as u32 + 1, column: column as u32 + 1 }
    }
}

struct Lowerer<'a> {
    scope: Scope<'a>,
    file: &'a FileInfo,
    /// The files of the file's `manifests` components, by glob.
    manifests: &'a HashMap<&'a str, &'a [ManifestFile]>,
}

impl Lowerer<'_> {
    fn namespace(&self) -> String {
        self.scope.namespace.to_string()
    }

    fn resolve(&self, kind: Kind, segments: &[ast::Ident]) -> String {
        let texts: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
        match self.scope.resolve(kind, &texts) {
            Lookup::Found(object, _) => object.to_string(),
            // Unreachable after a clean check; keep the name as written.
            _ => texts.join("."),
        }
    }

    fn label_id(&self, key: &str) -> Option<String> {
        match self.scope.resolve(Kind::Label, &[key]) {
            Lookup::Found(label, _) => Some(label.to_string()),
            _ => None,
        }
    }

    fn item(&self, item: &ast::Item, program: &mut Program) {
        let ns = self.namespace();
        match &item.kind {
            ItemKind::Label(label) => {
                let ty = type_text(&label.ty);
                let default = label.default.as_ref().and_then(constant);
                program.labels.insert(format!("{ns}.{}", label.name.text), LabelDecl { ty, default });
            }
            ItemKind::Service(service) => {
                let lowered = self.service(service);
                program.services.insert(format!("{ns}.{}", service.name.text), lowered);
            }
            ItemKind::Contract(contract) => {
                let lowered = self.contract(contract);
                program.contracts.insert(format!("{ns}.{}", contract.name.text), lowered);
            }
            ItemKind::Rule(rule) => {
                let lowered = self.rule(rule);
                program.rules.entry(ns).or_default().push(lowered);
            }
            ItemKind::Cluster(cluster) => {
                let mut lowered = Cluster {
                    name: cluster.name.text.to_string(),
                    context: None,
                    kubeconfig: None,
                    credentials: None,
                    namespace: None,
                    labels: BTreeMap::new(),
                    base_dir: self.file.dir.clone(),
                };
                for stmt in &cluster.body.stmts {
                    match &stmt.node {
                        ast::ClusterStmt::Context(s) => lowered.context = s.as_plain(),
                        ast::ClusterStmt::Kubeconfig(s) => lowered.kubeconfig = s.as_plain(),
                        ast::ClusterStmt::KubeconfigSecret { name, key } => {
                            lowered.credentials = name.as_plain().map(|name| Credentials::Secret {
                                name,
                                key: key.as_ref().and_then(|k| k.as_plain()).unwrap_or_else(|| KUBECONFIG_KEY.into()),
                            });
                        }
                        ast::ClusterStmt::InCluster(_) => lowered.credentials = Some(Credentials::InCluster),
                        ast::ClusterStmt::Namespace(s) => lowered.namespace = s.as_plain(),
                        ast::ClusterStmt::Labels(map) => lowered.labels = self.label_map(map),
                        ast::ClusterStmt::Error => {}
                    }
                }
                program.clusters.insert(format!("{ns}.{}", cluster.name.text), lowered);
            }
            ItemKind::Claim(claim) => program.claims.push(self.claim(claim)),
            ItemKind::Test(test) => program.tests.push(self.test(test)),
            ItemKind::Assert(assert) => program.assertions.push(self.assertion(assert)),
            ItemKind::User(user) => {
                let lowered = self.user(user);
                program.users.insert(lowered.name.to_lowercase(), lowered);
            }
            ItemKind::Team(team) => {
                let labels = team
                    .body
                    .iter()
                    .flat_map(|b| &b.stmts)
                    .filter_map(|s| match &s.node {
                        ast::TeamStmt::Labels(map) => Some(self.label_map(map)),
                        ast::TeamStmt::Error => None,
                    })
                    .next_back()
                    .unwrap_or_default();
                program.teams.insert(team.name.text.to_string(), Team { name: team.name.text.to_string(), labels });
            }
            ItemKind::Grant(grant) => {
                let namespaces = match grant.scope.as_ref().map(|s| &s.node) {
                    Some(ast::GrantScope::Namespaces(list)) => Some(list.iter().map(|i| i.text.to_string()).collect()),
                    _ => None,
                };
                program.grants.push(Grant {
                    role: grant.role.text.to_string(),
                    namespaces,
                    criteria: grant.criteria.as_ref().map(|e| self.expr(e)),
                });
            }
            _ => {}
        }
    }

    /// A claim (of the policy, or of a test block).
    pub(crate) fn claim(&self, claim: &ast::Claim) -> Claim {
        let mut consumer = Consumer::Team("".into());
        let mut contract = String::new();
        let mut labels = BTreeMap::new();
        for stmt in &claim.body.stmts {
            match &stmt.node {
                ast::ClaimStmt::User(name) => {
                    consumer = Consumer::User(name.as_plain().unwrap_or_default().to_lowercase().into())
                }
                ast::ClaimStmt::Team(team) => consumer = Consumer::Team(team.text.as_str().into()),
                ast::ClaimStmt::Contract(path) => contract = self.resolve(Kind::Contract, &path.segments),
                ast::ClaimStmt::Labels(map) => labels = self.label_map(map),
                ast::ClaimStmt::Error => {}
            }
        }
        Claim {
            namespace: self.namespace().into(),
            name: claim.name.text.to_string(),
            consumer,
            contract: contract.into(),
            labels: Arc::new(labels),
            origin: self.file.origin(claim.name.span),
        }
    }

    /// A user (of the policy, or of a test block).
    pub(crate) fn user(&self, user: &ast::User) -> User {
        let name = user.name.as_plain().unwrap_or_default();
        let mut lowered = User { name, team: None, groups: Vec::new(), labels: BTreeMap::new() };
        for stmt in user.body.iter().flat_map(|b| &b.stmts) {
            match &stmt.node {
                ast::UserStmt::Team(team) => lowered.team = Some(team.text.to_string()),
                ast::UserStmt::Groups(groups) => {
                    lowered.groups = groups.iter().filter_map(crate::semantics::expr::constant_string).collect()
                }
                ast::UserStmt::Labels(map) => lowered.labels = self.label_map(map),
                ast::UserStmt::Error => {}
            }
        }
        lowered
    }

    /// A test block: its claims and users as the policy's would be lowered, and its expectations.
    fn test(&self, test: &ast::TestBlock) -> TestCase {
        let mut lowered = TestCase {
            namespace: self.namespace(),
            name: test.name.text.to_string(),
            origin: self.file.origin(test.name.span),
            claims: Vec::new(),
            users: Vec::new(),
            expects: Vec::new(),
        };
        for stmt in &test.body.stmts {
            match &stmt.node {
                ast::TestStmt::Claim(claim) => lowered.claims.push(self.claim(claim)),
                ast::TestStmt::User(user) => lowered.users.push(self.user(user)),
                ast::TestStmt::Expect(expect) => lowered
                    .expects
                    .push(Expectation { expect: self.expect(expect), origin: self.file.origin(stmt.span) }),
                ast::TestStmt::Error => {}
            }
        }
        lowered
    }

    fn assertion(&self, assert: &ast::AssertBlock) -> Assertion {
        let mut lowered = Assertion {
            namespace: self.namespace(),
            name: assert.name.text.to_string(),
            origin: self.file.origin(assert.name.span),
            consumers: Vec::new(),
            contracts: Vec::new(),
            criteria: None,
            expects: Vec::new(),
        };
        let user = |lit: &ast::StrLit| lit.as_plain().unwrap_or_default().to_lowercase();
        for stmt in &assert.body.stmts {
            match &stmt.node {
                ast::AssertStmt::For(clause) => match clause {
                    ast::ForClause::User(lit) => lowered.consumers.push(Quantifier::User(user(lit))),
                    ast::ForClause::TeamUsers(team) => {
                        lowered.consumers.push(Quantifier::TeamUsers(team.text.to_string()))
                    }
                    ast::ForClause::Group(lit) => {
                        lowered.consumers.push(Quantifier::Group(lit.as_plain().unwrap_or_default()))
                    }
                    ast::ForClause::Team(team) => lowered.consumers.push(Quantifier::Team(team.text.to_string())),
                    ast::ForClause::Contract(path) => {
                        lowered.contracts.push(self.resolve(Kind::Contract, &path.segments))
                    }
                },
                ast::AssertStmt::When(e) => lowered.criteria = Some(self.expr(e)),
                ast::AssertStmt::Expect(a) => {
                    let expect = match &a.node {
                        ast::Assertion::Resolved => Outcome::Resolved,
                        ast::Assertion::Rejected => Outcome::Rejected,
                        ast::Assertion::Failed => Outcome::Failed,
                        ast::Assertion::PlacedOn(clusters) => Outcome::PlacedOn {
                            clusters: clusters.iter().map(|c| self.resolve(Kind::Cluster, &c.segments)).collect(),
                        },
                        ast::Assertion::Reaches { never, target } => {
                            Outcome::Reaches { never: *never, target: self.target(target) }
                        }
                        ast::Assertion::Shares { never, with } => Outcome::Shares {
                            never: *never,
                            with: match with {
                                ast::Party::User(lit) => Party::User(user(lit)),
                                ast::Party::Team(team) => Party::Team(team.text.to_string()),
                                ast::Party::Others => Party::Others,
                            },
                        },
                        ast::Assertion::That(e) => Outcome::That { expr: self.expr(e) },
                    };
                    lowered.expects.push(AssertExpectation { expect, origin: self.file.origin(stmt.span) });
                }
                ast::AssertStmt::Error => {}
            }
        }
        lowered
    }

    /// What `reaches` names: a contract, else a service, else `SERVICE.COMPONENT` (the checker's
    /// order).
    fn target(&self, path: &ast::Path) -> Target {
        let texts: Vec<&str> = path.segments.iter().map(|s| s.text.as_str()).collect();
        if let Lookup::Found(contract, _) = self.scope.resolve(Kind::Contract, &texts) {
            return Target::Contract(contract.to_string());
        }
        if let Lookup::Found(service, _) = self.scope.resolve(Kind::Service, &texts) {
            return Target::Service(service.to_string());
        }
        let (service, component) = self.test_component(path);
        Target::Component { service, component }
    }

    fn expect(&self, expect: &ast::Expect) -> Expect {
        match expect {
            ast::Expect::Claim(e) => {
                let claim = self.test_claim(&e.claim);
                match &e.outcome.node {
                    ast::ClaimOutcome::Resolved => Expect::Resolved { claim },
                    ast::ClaimOutcome::Rejected { pattern } => {
                        Expect::Rejected { claim, pattern: pattern.as_ref().and_then(|p| p.as_plain()) }
                    }
                }
            }
            ast::Expect::Instance(e) => {
                let (service, component) = self.test_component(&e.component);
                let mut lowered = Expect::Instance {
                    service,
                    component,
                    claim: self.test_claim(&e.claim),
                    context: None,
                    cluster: None,
                    namespace: None,
                    values: Vec::new(),
                };
                if let Expect::Instance { context, cluster, namespace, values, .. } = &mut lowered {
                    for stmt in e.body.iter().flat_map(|b| &b.stmts) {
                        match &stmt.node {
                            ast::InstanceStmt::Context(name) => *context = Some(name.text.to_string()),
                            ast::InstanceStmt::Cluster(path) => {
                                *cluster = Some(self.resolve(Kind::Cluster, &path.segments))
                            }
                            ast::InstanceStmt::Namespace(lit) => *namespace = lit.as_plain(),
                            ast::InstanceStmt::Values(map) => {
                                *values = map
                                    .entries
                                    .iter()
                                    .filter_map(|e| Some((map_key_text(&e.key)?.to_string(), constant(&e.value)?)))
                                    .collect();
                            }
                            ast::InstanceStmt::Error => {}
                        }
                    }
                }
                lowered
            }
            ast::Expect::NoInstance(e) => {
                let (service, component) = self.test_component(&e.component);
                Expect::NoInstance { service, component, claim: self.test_claim(&e.claim) }
            }
            ast::Expect::Instances(n) => Expect::Instances { count: n.node },
        }
    }

    /// The id of a claim named in a test: `name` is the test's own claim or one of its
    /// namespace's; `ns.name` is resolved as any qualified reference.
    fn test_claim(&self, path: &ast::Path) -> String {
        match path.segments.as_slice() {
            [name] => format!("{}.{}", self.namespace(), name.text),
            segments => self.resolve(Kind::Claim, segments),
        }
    }

    /// `SERVICE.COMPONENT` → (`namespace.service`, component).
    fn test_component(&self, path: &ast::Path) -> (String, String) {
        match path.segments.split_last() {
            Some((component, service)) if !service.is_empty() => {
                (self.resolve(Kind::Service, service), component.text.to_string())
            }
            _ => (String::new(), path.segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(".")),
        }
    }

    fn label_map(&self, map: &ast::MapLit) -> BTreeMap<String, Value> {
        map.entries
            .iter()
            .filter_map(|entry| {
                let key = map_key_text(&entry.key)?;
                Some((self.label_id(&key)?, constant(&entry.value)?))
            })
            .collect()
    }

    fn label_op(&self, op: &ast::LabelOp) -> LabelOp {
        match op {
            ast::LabelOp::Set { label, value } => {
                LabelOp::Set { label: self.label_or_key(&label.text), value: self.expr(value) }
            }
            ast::LabelOp::Remove { label } => LabelOp::Remove { label: self.label_or_key(&label.text) },
        }
    }

    fn label_or_key(&self, key: &str) -> String {
        self.label_id(key).unwrap_or_else(|| key.to_string())
    }

    fn service(&self, service: &ast::Service) -> Service {
        let components: Vec<&ast::Component> = service
            .body
            .stmts
            .iter()
            .filter_map(|s| match &s.node {
                ast::ServiceStmt::Component(c) => Some(c),
                ast::ServiceStmt::Error => None,
            })
            .collect();
        let lowered: Vec<Component> = components.iter().map(|c| self.component(c)).collect();
        Service {
            namespace: self.namespace(),
            name: service.name.text.to_string(),
            components: dependency_order(lowered),
        }
    }

    fn component(&self, component: &ast::Component) -> Component {
        let mut repo = None;
        let mut version = None;
        let mut lowered = Component {
            name: component.name.text.to_string(),
            source: Source::Uses { contract: String::new() },
            criteria: None,
            after: Vec::new(),
            values: Vec::new(),
            discovery: Vec::new(),
            origin: self.file.origin(component.name.span),
        };
        for stmt in component.body.iter().flat_map(|b| &b.stmts) {
            match &stmt.node {
                ast::ComponentStmt::Repo(s) => repo = s.as_plain(),
                ast::ComponentStmt::Version(s) => version = s.as_plain(),
                ast::ComponentStmt::When(e) => lowered.criteria = Some(self.expr(e)),
                ast::ComponentStmt::After(names) => lowered.after = names.iter().map(|n| n.text.to_string()).collect(),
                ast::ComponentStmt::Values(map) => {
                    lowered.values = map.entries.iter().map(|e| (self.key(&e.key), self.expr(&e.value))).collect();
                }
                ast::ComponentStmt::Discovery(map) => {
                    lowered.discovery = map
                        .entries
                        .iter()
                        .filter_map(|e| Some((map_key_text(&e.key)?.to_string(), self.expr(&e.value))))
                        .collect();
                }
                ast::ComponentStmt::Error => {}
            }
        }
        let base_dir = self.file.dir.clone();
        lowered.source = match &component.source.node {
            ast::ComponentSource::Uses(path) => Source::Uses { contract: self.resolve(Kind::Contract, &path.segments) },
            ast::ComponentSource::Chart(chart) => {
                Source::Chart { chart: chart.as_plain().unwrap_or_default(), repo, version, base_dir }
            }
            ast::ComponentSource::Manifests(glob) => {
                let glob = glob.as_plain().unwrap_or_default();
                let templates = self.manifests.get(glob.as_str()).copied().unwrap_or_default();
                let templates = templates
                    .iter()
                    .filter_map(|file| {
                        let text = file.text.as_ref().ok()?;
                        let template = self.parts(&crate::syntax::parse_template(file.id, text).parts);
                        Some(ManifestTemplate { path: file.relative.clone(), template })
                    })
                    .collect();
                Source::Manifests { glob, base_dir, templates }
            }
        };
        lowered
    }

    fn contract(&self, contract: &ast::Contract) -> Contract {
        let mut lowered = Contract {
            namespace: self.namespace(),
            name: contract.name.text.to_string(),
            ops: Vec::new(),
            contexts: Vec::new(),
            origin: self.file.origin(contract.name.span),
        };
        for stmt in &contract.body.stmts {
            match &stmt.node {
                ast::ContractStmt::LabelOp(op) => lowered.ops.push(self.label_op(op)),
                ast::ContractStmt::Context(context) => {
                    let mut ctx = Context {
                        name: context.name.text.to_string(),
                        criteria: context.criteria.as_ref().map(|e| self.expr(e)),
                        ops: Vec::new(),
                        allocate: Vec::new(),
                        service: String::new(),
                        origin: self.file.origin(context.name.span),
                    };
                    for stmt in &context.body.stmts {
                        match &stmt.node {
                            ast::ContextStmt::LabelOp(op) => ctx.ops.push(self.label_op(op)),
                            ast::ContextStmt::Allocate(keys) => {
                                ctx.allocate = keys.iter().map(|k| self.expr(k)).collect()
                            }
                            ast::ContextStmt::Use(path) => ctx.service = self.resolve(Kind::Service, &path.segments),
                            ast::ContextStmt::Error => {}
                        }
                    }
                    lowered.contexts.push(ctx);
                }
                ast::ContractStmt::Error => {}
            }
        }
        lowered
    }

    fn rule(&self, rule: &ast::Rule) -> Rule {
        let actions = rule
            .body
            .stmts
            .iter()
            .filter_map(|stmt| match &stmt.node {
                ast::RuleStmt::LabelOp(op) => Some(Action::Label(self.label_op(op))),
                ast::RuleStmt::Reject(message) => Some(Action::Reject { message: self.template(message) }),
                ast::RuleStmt::Place { cluster, namespace } => Some(Action::Place {
                    cluster: self.resolve(Kind::Cluster, &cluster.segments),
                    namespace: namespace.as_ref().map(|e| self.expr(e)),
                }),
                ast::RuleStmt::Error => None,
            })
            .collect();
        Rule {
            namespace: self.namespace(),
            name: rule.name.text.to_string(),
            weight: rule.weight.as_ref().map_or(0, |w| w.node),
            criteria: rule.criteria.as_ref().map(|e| self.expr(e)),
            actions,
            origin: self.file.origin(rule.name.span),
        }
    }

    fn key(&self, key: &ast::MapKey) -> Template {
        match key {
            ast::MapKey::Name(ident) => Template { parts: vec![TemplatePart::Text(ident.text.to_string())] },
            ast::MapKey::Str(lit) => self.template(lit),
        }
    }

    fn template(&self, lit: &ast::StrLit) -> Template {
        self.parts(&lit.parts)
    }

    /// The text and interpolations of a string literal or a manifest template.
    fn parts(&self, parts: &[ast::StrPart]) -> Template {
        let parts = parts
            .iter()
            .map(|part| match part {
                ast::StrPart::Text(text) => TemplatePart::Text(text.to_string()),
                ast::StrPart::Interp(e) => TemplatePart::Expr(self.expr(e)),
            })
            .collect();
        Template { parts }
    }

    fn expr(&self, expr: &ast::Expr) -> Expr {
        use ast::ExprKind as K;
        match &expr.kind {
            K::Int(n) => Expr::Const(Value::Int(*n)),
            K::Bool(b) => Expr::Const(Value::Bool(*b)),
            K::Str(lit) => match lit.as_plain() {
                Some(text) => Expr::Const(Value::Str(text)),
                None => Expr::Template(self.template(lit)),
            },
            K::List(items) => {
                let lowered: Vec<Expr> = items.iter().map(|e| self.expr(e)).collect();
                let constants: Option<Vec<Value>> =
                    lowered.iter().map(|e| if let Expr::Const(v) = e { Some(v.clone()) } else { None }).collect();
                constants.map_or(Expr::List(lowered), |values| Expr::Const(Value::List(values)))
            }
            K::Map(map) => Expr::Map(map.entries.iter().map(|e| (self.key(&e.key), self.expr(&e.value))).collect()),
            K::Path(path) => self.path(path),
            K::Call { func, args } => {
                Expr::Call { function: func.text.to_string(), args: args.iter().map(|a| self.expr(a)).collect() }
            }
            K::Unary { op: ast::UnaryOp::Not, expr } => Expr::Not(Box::new(self.expr(expr))),
            K::Unary { op: ast::UnaryOp::Neg, expr } => Expr::Neg(Box::new(self.expr(expr))),
            K::Binary { op, lhs, rhs } => {
                Expr::Binary { op: binary(*op), lhs: Box::new(self.expr(lhs)), rhs: Box::new(self.expr(rhs)) }
            }
            K::Paren(inner) => self.expr(inner),
            K::Error => Expr::Const(Value::Bool(false)),
        }
    }

    fn path(&self, path: &ast::Path) -> Expr {
        let segments: Vec<&str> = path.segments.iter().map(|s| s.text.as_str()).collect();
        match segments.as_slice() {
            ["labels", key] => Expr::Label(self.label_or_key(key)),
            ["user", "name"] => Expr::User(UserField::Name),
            ["user", "team"] => Expr::User(UserField::Team),
            ["user", "groups"] => Expr::User(UserField::Groups),
            ["user", "labels", key] => Expr::User(UserField::Label(self.label_or_key(key))),
            ["claim", "name"] => Expr::Claim(ClaimField::Name),
            ["claim", "namespace"] => Expr::Claim(ClaimField::Namespace),
            ["claim", "id"] => Expr::Claim(ClaimField::Id),
            ["cluster", "name"] => Expr::Cluster(ClusterField::Name),
            ["cluster", "namespace"] => Expr::Cluster(ClusterField::Namespace),
            ["cluster", "labels", key] => Expr::Cluster(ClusterField::Label(self.label_or_key(key))),
            ["instance", "name"] => Expr::Instance(InstanceField::Name),
            ["instance", "id"] => Expr::Instance(InstanceField::Id),
            ["values", key] => Expr::Value(key.to_string()),
            [component, "discovery", key] => Expr::Discovery { component: component.to_string(), key: key.to_string() },
            _ => Expr::Const(Value::Bool(false)),
        }
    }
}

fn binary(op: ast::BinaryOp) -> BinaryOp {
    match op {
        ast::BinaryOp::Or => BinaryOp::Or,
        ast::BinaryOp::And => BinaryOp::And,
        ast::BinaryOp::Eq => BinaryOp::Eq,
        ast::BinaryOp::Ne => BinaryOp::Ne,
        ast::BinaryOp::Lt => BinaryOp::Lt,
        ast::BinaryOp::Le => BinaryOp::Le,
        ast::BinaryOp::Gt => BinaryOp::Gt,
        ast::BinaryOp::Ge => BinaryOp::Ge,
        ast::BinaryOp::In => BinaryOp::In,
        ast::BinaryOp::NotIn => BinaryOp::NotIn,
        ast::BinaryOp::Matches => BinaryOp::Matches,
    }
}

fn type_text(ty: &ast::TypeExpr) -> String {
    match &ty.kind {
        ast::TypeExprKind::Named(name) => name.text.to_string(),
        ast::TypeExprKind::Enum(variants) => {
            variants.iter().map(|v| format!("{:?}", v.as_plain().unwrap_or_default())).collect::<Vec<_>>().join(" | ")
        }
        ast::TypeExprKind::List(inner) => format!("[{}]", type_text(inner)),
    }
}

/// Components ordered so each comes after its dependencies; otherwise in declaration order.
fn dependency_order(components: Vec<Component>) -> Vec<Component> {
    let position: HashMap<String, usize> = components.iter().enumerate().map(|(i, c)| (c.name.clone(), i)).collect();
    let mut placed = vec![false; components.len()];
    let mut order = Vec::with_capacity(components.len());
    fn visit(
        i: usize,
        components: &[Component],
        position: &HashMap<String, usize>,
        placed: &mut [bool],
        order: &mut Vec<usize>,
    ) {
        if placed[i] {
            return;
        }
        placed[i] = true;
        for dep in &components[i].after {
            if let Some(&j) = position.get(dep) {
                visit(j, components, position, placed, order);
            }
        }
        order.push(i);
    }
    for i in 0..components.len() {
        visit(i, &components, &position, &mut placed, &mut order);
    }
    let mut slots: Vec<Option<Component>> = components.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

#[cfg(test)]
mod tests {
    use crate::host::Analysis;

    const POLICY: &str = r#"namespace system
label env: "dev" | "prod" = "dev"
label region: string = "eu"
team ops
user "a@example.com" {
    team ops
}
grant consumer on * when true
cluster c0 {
    namespace "apps"
}
rule placement weight 1 {
    place on c0
}
service s {
    component c chart "x" {
        version "1"
    }
}
contract k {
    context prod when labels.env == "prod" {
        use s
    }
    context eu when labels.region == "eu" {
        use s
    }
    context other {
        use s
    }
}
claim a {
    user "a@example.com"
    contract k
    labels { env = "dev", region = "eu" }
}
claim b {
    user "a@example.com"
    contract k
    labels { region = "eu", env = "dev" }
}
claim c {
    user "a@example.com"
    contract k
    labels { env = "dev", region = "us" }
}
claim d {
    user "a@example.com"
    contract k
}
"#;

    /// A second file of the policy (with the grant that lets the claims of [`POLICY`] be made),
    /// so that lowering file by file frees a tree it needs no more.
    const MORE: &str = r#"namespace system
grant consumer on system when true
claim e {
    user "a@example.com"
    contract k
    labels { env = "prod" }
}
"#;

    /// `Analysis::lower`, which checks and lowers file by file and frees each tree before the next,
    /// gives the program of lowering the whole checked database, and checking after it (the
    /// evicted values computed again) gives the same diagnostics.
    #[test]
    fn lowering_while_freeing_gives_the_same_program_and_diagnostics() {
        let files = [("system.apt", POLICY), ("more.apt", MORE)];
        let mut kept = Analysis::of_texts(files);
        let expected = super::lower_clean(kept.db(), kept.workspace());
        let diagnostics = kept.check().diagnostics;
        let mut freed = Analysis::of_texts(files);
        let program = freed.lower().expect("the policy checks clean");
        assert_eq!(program.claims.len(), 5);
        assert_eq!(program.to_json(), expected.to_json());
        assert_eq!(freed.check().diagnostics, diagnostics);
    }

    /// A policy with errors that only the whole-policy checks find (a claim declared in two
    /// files, a namespace given two owners) gives `Analysis::lower`, which reads per-file facts
    /// instead of the freed trees, the errors that checking the whole database gives.
    #[test]
    fn lowering_file_by_file_finds_the_whole_policy_errors() {
        let twice = "namespace system owned_by other_team\nteam other_team\nclaim a {\n    user \"a@example.com\"\n    contract k\n}\n";
        let owned = "namespace system owned_by ops\n";
        let files = [("system.apt", POLICY), ("more.apt", MORE), ("twice.apt", twice), ("owned.apt", owned)];
        let mut kept = Analysis::of_texts(files);
        let expected: Vec<_> = kept.check().diagnostics.into_iter().filter(|d| d.is_error()).collect();
        let codes: Vec<&str> = expected.iter().map(|d| d.code.as_str()).collect();
        assert!(codes.contains(&"APT0202") && codes.contains(&"APT0206"), "{codes:?}");
        let errors = Analysis::of_texts(files).lower().expect_err("the policy has errors");
        assert_eq!(errors, expected);
    }

    /// Claims whose label values earlier claims hold are left out of the lints' program, and
    /// the lints find the same.
    #[test]
    fn lints_program_keeps_the_values_of_the_claims() {
        let analysis = Analysis::of_texts([("system.apt", POLICY)]);
        let (db, ws) = (analysis.db(), analysis.workspace());
        let all = super::lower_clean(db, ws);
        let lints = super::lints_program(db, ws);
        let names: Vec<&str> = lints.claims.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a", "c"]);
        assert_eq!(all.claims.len(), 4);
        let found = |program| format!("{:?}", aptc_core::verify::lints(program));
        assert_eq!(found(&lints), found(&all));
    }
    /// Claims writing the same labels (in any order, in any file) share one map; others do not.
    #[test]
    fn claims_writing_the_same_labels_share_them() {
        let other = "namespace system\nclaim f {\n    user \"a@example.com\"\n    contract k\n    labels { env = \"dev\", region = \"eu\" }\n}\n";
        let analysis = Analysis::of_texts([("system.apt", POLICY), ("other.apt", other)]);
        let program = super::lower_clean(analysis.db(), analysis.workspace());
        let [a, b, c, d, f] = &program.claims[..] else { panic!("five claims") };
        assert!(std::sync::Arc::ptr_eq(&a.labels, &b.labels) && std::sync::Arc::ptr_eq(&a.labels, &f.labels));
        assert!(!std::sync::Arc::ptr_eq(&a.labels, &c.labels) && a.labels != c.labels);
        assert!(d.labels.is_empty());
    }
}
