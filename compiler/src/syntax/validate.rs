//! Structural checks on one file's tree: what each declaration must, may and may not
//! contain. They need no other file, so they run right after parsing; checks that need
//! names or types across files belong to the semantic stage.

use std::collections::HashMap;

use aptc_core::ir::SYSTEM_NAMESPACE;

use super::ast::*;
use crate::FastMap;
use crate::diagnostics::{Diagnostic, codes};
use crate::source::FileId;

/// Roles a `grant` may name.
pub const ROLES: &[&str] = &["domain_admin", "namespace_admin", "consumer"];

/// The namespace whose files declare the standard library.
pub const STD_NAMESPACE: &str = "std";

/// Runs every structural check on `file`.
pub fn validate(file_id: FileId, file: &SourceFile) -> Vec<Diagnostic> {
    let mut v = Validator { file: file_id, out: Vec::new() };
    v.namespace_decls(file);
    let in_std = file.items.iter().any(|i| matches!(&i.kind, ItemKind::Namespace(ns) if ns.name.text == STD_NAMESPACE));
    let namespace = file.items.iter().find_map(|i| match &i.kind {
        ItemKind::Namespace(ns) => Some(ns.name.text.as_str()),
        _ => None,
    });
    for item in &file.items {
        v.item(item, in_std);
        if let Some(namespace) = namespace
            && namespace != SYSTEM_NAMESPACE
        {
            v.global_only(item, namespace);
        }
    }
    v.out
}

struct Validator {
    file: FileId,
    out: Vec<Diagnostic>,
}

impl Validator {
    /// Clusters, users, teams, users files and grants belong to namespace `system` (§3.2).
    fn global_only(&mut self, item: &Item, namespace: &str) {
        let (what, span) = match &item.kind {
            ItemKind::Cluster(c) => ("a cluster", c.name.span),
            ItemKind::User(u) => ("a user", u.name.span),
            ItemKind::Team(t) => ("a team", t.name.span),
            ItemKind::UsersFrom(u) => ("`users from`", u.path.span),
            ItemKind::Grant(g) => ("a grant", g.role.span),
            _ => return,
        };
        self.out.push(
            Diagnostic::new(
                codes::MISPLACED_STATEMENT,
                self.file,
                span,
                format!("{what} belongs in namespace `system`, not `{namespace}`"),
            )
            .with_primary_message("declared outside `system`")
            .with_help(
                "move it to a file that starts with `namespace system`: clusters, users, teams and grants are global",
            ),
        );
    }

    fn namespace_decls(&mut self, file: &SourceFile) {
        let mut decls = file.items.iter().filter(|i| matches!(i.kind, ItemKind::Namespace(_)));
        let first_item = file.items.iter().find(|i| !matches!(i.kind, ItemKind::Error));
        match (decls.next(), first_item) {
            (None, Some(item)) => self.out.push(
                Diagnostic::new(codes::MISSING_NAMESPACE, self.file, item.span, "this file declares no namespace")
                    .with_primary_message("objects here would belong to no namespace")
                    .with_help("start the file with `namespace NAME` (optionally `owned_by TEAM`)"),
            ),
            (Some(decl), Some(first)) if decl.span != first.span => self.out.push(
                Diagnostic::new(
                    codes::MISSING_NAMESPACE,
                    self.file,
                    decl.span,
                    "the namespace declaration must come first",
                )
                .with_label(self.file, first.span, "this declaration comes before it")
                .with_help("move `namespace …` to the top of the file"),
            ),
            _ => {}
        }
        let first = file.items.iter().find(|i| matches!(i.kind, ItemKind::Namespace(_)));
        for extra in decls {
            if let Some(first) = first {
                self.out.push(
                    Diagnostic::new(
                        codes::DUPLICATE_NAMESPACE_DECL,
                        self.file,
                        extra.span,
                        "a second namespace declaration",
                    )
                    .with_primary_message("second declaration")
                    .with_label(self.file, first.span, "the file's namespace is declared here")
                    .with_help("a file belongs to one namespace; move these declarations to a file of their own"),
                );
            }
        }
    }

    fn item(&mut self, item: &Item, in_std: bool) {
        match &item.kind {
            ItemKind::Label(label) => {
                if let Some(default) = &label.default {
                    self.expr(default);
                }
            }
            ItemKind::Service(service) => self.service(service),
            ItemKind::Contract(contract) => self.contract(item, contract),
            ItemKind::Rule(rule) => self.rule(item, rule),
            ItemKind::Cluster(cluster) => {
                self.unique(&cluster.body.stmts, |s| match s {
                    ClusterStmt::Context(_) => Some("context"),
                    ClusterStmt::Kubeconfig(_) => Some("kubeconfig"),
                    ClusterStmt::KubeconfigSecret { .. } => Some("kubeconfig secret"),
                    ClusterStmt::InCluster(_) => Some("kubeconfig in_cluster"),
                    ClusterStmt::Namespace(_) => Some("namespace"),
                    ClusterStmt::Labels(_) => Some("labels"),
                    ClusterStmt::Error => None,
                });
                self.cluster_credentials(&cluster.body.stmts);
                for stmt in &cluster.body.stmts {
                    if let ClusterStmt::Labels(map) = &stmt.node {
                        self.map(map);
                    }
                }
            }
            ItemKind::Claim(claim) => self.claim(item.span, claim),
            ItemKind::User(user) => self.user(user),
            ItemKind::Test(test) => self.test(test),
            ItemKind::Assert(assert) => self.assert(assert),
            ItemKind::Team(team) => {
                if let Some(body) = &team.body {
                    self.unique(&body.stmts, |s| matches!(s, TeamStmt::Labels(_)).then_some("labels"));
                    for stmt in &body.stmts {
                        if let TeamStmt::Labels(map) = &stmt.node {
                            self.map(map);
                        }
                    }
                }
            }
            ItemKind::Grant(grant) => {
                if !ROLES.contains(&grant.role.text.as_str()) {
                    let suggestion = ROLES
                        .iter()
                        .min_by_key(|r| super::edit_distance(&grant.role.text, r))
                        .filter(|r| super::edit_distance(&grant.role.text, r) <= 3);
                    let mut d = Diagnostic::new(
                        codes::UNKNOWN_ROLE,
                        self.file,
                        grant.role.span,
                        format!("unknown role `{}`", grant.role.text),
                    )
                    .with_primary_message("not a role");
                    d = match suggestion {
                        Some(role) => d.with_help(format!("did you mean `{role}`? The roles are {}", ROLES.join(", "))),
                        None => d.with_help(format!("the roles are {}", ROLES.join(", "))),
                    };
                    self.out.push(d);
                }
                if let Some(criteria) = &grant.criteria {
                    self.expr(criteria);
                }
            }
            ItemKind::Function(function) => {
                if !in_std {
                    self.out.push(
                        Diagnostic::new(
                            codes::MISPLACED_STATEMENT,
                            self.file,
                            function.name.span,
                            "functions can only be declared by the standard library",
                        )
                        .with_primary_message("`fn` outside `namespace std`")
                        .with_help("use the functions of stdlib/; policies cannot define their own"),
                    );
                }
            }
            ItemKind::Namespace(_) | ItemKind::Import(_) | ItemKind::UsersFrom(_) | ItemKind::Error => {}
        }
    }

    fn service(&mut self, service: &Service) {
        if service.body.stmts.is_empty() {
            self.out.push(
                Diagnostic::new(
                    codes::EMPTY_BLOCK,
                    self.file,
                    service.name.span,
                    format!("service `{}` has no components", service.name.text),
                )
                .with_primary_message("nothing to deploy")
                .with_help("add a `component`, or remove the service"),
            );
        }
        for stmt in &service.body.stmts {
            let ServiceStmt::Component(component) = &stmt.node else { continue };
            let Some(body) = &component.body else {
                self.unpinned(component, false, false);
                continue;
            };
            self.unique(&body.stmts, |s| match s {
                ComponentStmt::Repo(_) => Some("repo"),
                ComponentStmt::Version(_) => Some("version"),
                ComponentStmt::When(_) => Some("when"),
                ComponentStmt::After(_) => Some("after"),
                ComponentStmt::Values(_) => Some("values"),
                ComponentStmt::Discovery(_) => Some("discovery"),
                ComponentStmt::Error => None,
            });
            let mut has_version = false;
            let has_repo = body.stmts.iter().any(|s| matches!(s.node, ComponentStmt::Repo(_)));
            for stmt in &body.stmts {
                let misplaced = match (&component.source.node, &stmt.node) {
                    (ComponentSource::Chart(_), _) => None,
                    (_, ComponentStmt::Repo(_)) => Some("`repo` only applies to `chart` components"),
                    (_, ComponentStmt::Version(_)) => Some("`version` only applies to `chart` components"),
                    (ComponentSource::Uses(_), ComponentStmt::Values(_)) => {
                        Some("`values` do not apply to `uses` components: the used contract's service renders its own")
                    }
                    _ => None,
                };
                if let Some(message) = misplaced {
                    self.out.push(
                        Diagnostic::new(codes::MISPLACED_STATEMENT, self.file, stmt.span, message)
                            .with_primary_message("not allowed here")
                            .with_label(self.file, component.source.span, "the component's source")
                            .with_help("remove the statement, or change the component's source"),
                    );
                }
                match &stmt.node {
                    ComponentStmt::Version(_) => has_version = true,
                    ComponentStmt::When(e) => self.expr(e),
                    ComponentStmt::Values(map) | ComponentStmt::Discovery(map) => self.map(map),
                    _ => {}
                }
            }
            self.unpinned(component, has_version, has_repo);
        }
    }

    fn unpinned(&mut self, component: &Component, has_version: bool, has_repo: bool) {
        let ComponentSource::Chart(chart) = &component.source.node else { return };
        let is_local = chart.as_plain().is_some_and(|c| aptc_core::ir::is_local_chart(&c, has_repo));
        if !has_version && !is_local {
            self.out.push(
                Diagnostic::new(
                    codes::UNPINNED_CHART,
                    self.file,
                    component.source.span,
                    format!("chart of component `{}` has no version", component.name.text),
                )
                .with_primary_message("any new chart release will be deployed")
                .with_help("pin it: add `version \"x.y.z\"` to the component"),
            );
        }
    }

    fn contract(&mut self, item: &Item, contract: &Contract) {
        let mut contexts = 0;
        for stmt in &contract.body.stmts {
            match &stmt.node {
                ContractStmt::LabelOp(op) => self.label_op(op),
                ContractStmt::Context(context) => {
                    contexts += 1;
                    if let Some(criteria) = &context.criteria {
                        self.expr(criteria);
                    }
                    self.unique(&context.body.stmts, |s| match s {
                        ContextStmt::Allocate(_) => Some("allocate"),
                        ContextStmt::Use(_) => Some("use"),
                        _ => None,
                    });
                    let mut uses = false;
                    for stmt in &context.body.stmts {
                        match &stmt.node {
                            ContextStmt::LabelOp(op) => self.label_op(op),
                            ContextStmt::Allocate(keys) => keys.iter().for_each(|k| self.expr(k)),
                            ContextStmt::Use(_) => uses = true,
                            ContextStmt::Error => uses = true, // do not pile up errors
                        }
                    }
                    if !uses {
                        self.out.push(
                            Diagnostic::new(
                                codes::MISSING_STATEMENT,
                                self.file,
                                context.name.span,
                                format!("context `{}` does not say which service to use", context.name.text),
                            )
                            .with_primary_message("no `use` in this context")
                            .with_help("add `use SERVICE` to the context"),
                        );
                    }
                }
                ContractStmt::Error => contexts += 1,
            }
        }
        if contexts == 0 {
            self.out.push(
                Diagnostic::new(
                    codes::MISSING_STATEMENT,
                    self.file,
                    contract.name.span,
                    format!("contract `{}` has no context", contract.name.text),
                )
                .with_primary_message("no contexts")
                .with_label(self.file, item.span, "no claim on this contract could ever be served")
                .with_help("add `context NAME { use SERVICE }`"),
            );
        }
    }

    fn rule(&mut self, item: &Item, rule: &Rule) {
        if let Some(criteria) = &rule.criteria {
            self.expr(criteria);
        }
        if rule.body.stmts.is_empty() {
            self.out.push(
                Diagnostic::new(
                    codes::EMPTY_BLOCK,
                    self.file,
                    rule.name.span,
                    format!("rule `{}` has no action", rule.name.text),
                )
                .with_primary_message("no actions")
                .with_label(self.file, item.span, "this rule changes nothing")
                .with_help("add `set`, `remove`, `reject` or `place`, or remove the rule"),
            );
        }
        for stmt in &rule.body.stmts {
            match &stmt.node {
                RuleStmt::LabelOp(op) => self.label_op(op),
                RuleStmt::Place { namespace: Some(e), .. } => self.expr(e),
                _ => {}
            }
        }
    }

    fn user(&mut self, user: &User) {
        let Some(body) = &user.body else { return };
        self.unique(&body.stmts, |s| match s {
            UserStmt::Team(_) => Some("team"),
            UserStmt::Groups(_) => Some("groups"),
            UserStmt::Labels(_) => Some("labels"),
            UserStmt::Error => None,
        });
        for stmt in &body.stmts {
            match &stmt.node {
                UserStmt::Labels(map) => self.map(map),
                UserStmt::Groups(groups) => groups.iter().for_each(|g| self.expr(g)),
                _ => {}
            }
        }
    }

    /// A test's claims and users as at top level; expectations that can never all hold.
    fn test(&mut self, test: &TestBlock) {
        let mut expects = false;
        let mut broken = false;
        // Claim → (outcome, where) and (component, claim) → (present, where), for conflicts.
        let mut outcomes: HashMap<String, (bool, Span)> = HashMap::new();
        let mut instances: HashMap<(String, String), (bool, Span)> = HashMap::new();
        for stmt in &test.body.stmts {
            match &stmt.node {
                TestStmt::Claim(claim) => self.claim(stmt.span, claim),
                TestStmt::User(user) => self.user(user),
                TestStmt::Expect(expect) => {
                    expects = true;
                    match expect {
                        Expect::Claim(e) => {
                            let resolved = matches!(e.outcome.node, ClaimOutcome::Resolved);
                            let key = path_text(&e.claim);
                            self.conflict(&mut outcomes, key, resolved, stmt.span, "`resolved` and `rejected`");
                        }
                        Expect::Instance(e) => {
                            let key = (path_text(&e.component), path_text(&e.claim));
                            self.conflict(&mut instances, key, true, stmt.span, "an instance and no instance");
                            if let Some(body) = &e.body {
                                self.unique(&body.stmts, |s| match s {
                                    InstanceStmt::Context(_) => Some("context"),
                                    InstanceStmt::Cluster(_) => Some("cluster"),
                                    InstanceStmt::Namespace(_) => Some("namespace"),
                                    InstanceStmt::Values(_) => Some("values"),
                                    InstanceStmt::Error => None,
                                });
                                for stmt in &body.stmts {
                                    if let InstanceStmt::Values(map) = &stmt.node {
                                        self.map(map);
                                    }
                                }
                            }
                        }
                        Expect::NoInstance(e) => {
                            let key = (path_text(&e.component), path_text(&e.claim));
                            self.conflict(&mut instances, key, false, stmt.span, "an instance and no instance");
                        }
                        Expect::Instances(_) => {}
                    }
                }
                TestStmt::Error => broken = true,
            }
        }
        self.unique(&test.body.stmts, |s| {
            matches!(s, TestStmt::Expect(Expect::Instances(_))).then_some("expect instances")
        });
        if !expects && !broken {
            self.out.push(
                Diagnostic::new(
                    codes::EMPTY_BLOCK,
                    self.file,
                    test.name.span,
                    format!("test `{}` expects nothing", test.name.text),
                )
                .with_primary_message("no `expect` statement")
                .with_help("add what the policy should do, e.g. `expect claim NAME resolved`, or remove the test"),
            );
        }
    }

    /// An assertion (docs/language.md §19): `when` at most once, expressions checked, at least one
    /// `expect`.
    fn assert(&mut self, assert: &AssertBlock) {
        self.unique(&assert.body.stmts, |s| matches!(s, AssertStmt::When(_)).then_some("when"));
        let mut expects = false;
        let mut broken = false;
        for stmt in &assert.body.stmts {
            match &stmt.node {
                AssertStmt::When(e) => self.expr(e),
                AssertStmt::Expect(a) => {
                    expects = true;
                    if let Assertion::That(e) = &a.node {
                        self.expr(e);
                    }
                }
                AssertStmt::For(_) => {}
                AssertStmt::Error => broken = true,
            }
        }
        if !expects && !broken {
            self.out.push(
                Diagnostic::new(
                    codes::EMPTY_BLOCK,
                    self.file,
                    assert.name.span,
                    format!("assertion `{}` expects nothing", assert.name.text),
                )
                .with_primary_message("no `expect` statement")
                .with_help("say what must hold of every claim, e.g. `expect resolved`, or remove the assertion"),
            );
        }
    }

    /// Two expectations about the same thing that cannot both hold (APT0105).
    fn conflict<K: std::hash::Hash + Eq>(
        &mut self,
        seen: &mut HashMap<K, (bool, Span)>,
        key: K,
        value: bool,
        span: Span,
        what: &str,
    ) {
        match seen.get(&key) {
            Some(&(first, first_span)) if first != value => self.out.push(
                Diagnostic::new(
                    codes::CONFLICTING_STATEMENTS,
                    self.file,
                    span,
                    format!("this test expects both {what} here"),
                )
                .with_primary_message("contradicts an earlier expectation")
                .with_label(self.file, first_span, "the earlier expectation")
                .with_help("keep the expectation you mean; a test can never pass with both"),
            ),
            Some(_) => {}
            None => {
                seen.insert(key, (value, span));
            }
        }
    }

    /// A cluster's kubeconfig comes from one place (a file, a Secret, or the home cluster), and
    /// `in_cluster` has no contexts to choose from.
    fn cluster_credentials(&mut self, stmts: &[Spanned<ClusterStmt>]) {
        let form = |s: &ClusterStmt| match s {
            ClusterStmt::Kubeconfig(_) => Some("kubeconfig \"PATH\""),
            ClusterStmt::KubeconfigSecret { .. } => Some("kubeconfig secret"),
            ClusterStmt::InCluster(_) => Some("kubeconfig in_cluster"),
            _ => None,
        };
        let mut first: Option<(&'static str, Span)> = None;
        for stmt in stmts {
            let Some(this) = form(&stmt.node) else { continue };
            match first {
                None => first = Some((this, stmt.span)),
                Some((earlier, earlier_span)) if earlier != this => self.out.push(
                    Diagnostic::new(
                        codes::CONFLICTING_STATEMENTS,
                        self.file,
                        stmt.span,
                        format!("a cluster's kubeconfig comes from one place, not `{earlier}` and `{this}`"),
                    )
                    .with_primary_message("a second source of the kubeconfig")
                    .with_label(self.file, earlier_span, "the kubeconfig already comes from here")
                    .with_help("keep the one statement that says where this cluster's credentials are"),
                ),
                Some(_) => {}
            }
        }
        let in_cluster = stmts.iter().find(|s| matches!(s.node, ClusterStmt::InCluster(_)));
        let context = stmts.iter().find(|s| matches!(s.node, ClusterStmt::Context(_)));
        if let (Some(in_cluster), Some(context)) = (in_cluster, context) {
            self.out.push(
                Diagnostic::new(
                    codes::CONFLICTING_STATEMENTS,
                    self.file,
                    context.span,
                    "`context` names a context of a kubeconfig, and `kubeconfig in_cluster` has none",
                )
                .with_primary_message("no context to choose")
                .with_label(self.file, in_cluster.span, "the home cluster itself")
                .with_help("remove `context`, or name a kubeconfig (a file or a Secret) that has this context"),
            );
        }
    }

    fn claim(&mut self, span: Span, claim: &Claim) {
        self.unique(&claim.body.stmts, |s| match s {
            ClaimStmt::User(_) => Some("user"),
            ClaimStmt::Team(_) => Some("team"),
            ClaimStmt::Contract(_) => Some("contract"),
            ClaimStmt::Labels(_) => Some("labels"),
            ClaimStmt::Error => None,
        });
        let find = |f: fn(&ClaimStmt) -> bool| claim.body.stmts.iter().find(|s| f(&s.node));
        let user = find(|s| matches!(s, ClaimStmt::User(_)));
        let team = find(|s| matches!(s, ClaimStmt::Team(_)));
        let broken = find(|s| matches!(s, ClaimStmt::Error)).is_some();
        if let (Some(user), Some(team)) = (user, team) {
            self.out.push(
                Diagnostic::new(
                    codes::CONFLICTING_STATEMENTS,
                    self.file,
                    team.span,
                    "a claim is made by a user or by a team, not both",
                )
                .with_primary_message("and a team")
                .with_label(self.file, user.span, "the claim's user")
                .with_help("keep `user` for a person's claim or `team` for a team's claim"),
            );
        }
        if !broken && user.is_none() && team.is_none() {
            self.out.push(
                Diagnostic::new(
                    codes::MISSING_STATEMENT,
                    self.file,
                    claim.name.span,
                    format!("claim `{}` names no consumer", claim.name.text),
                )
                .with_primary_message("no `user` or `team`")
                .with_label(self.file, span, "whose claim is this?")
                .with_help("add `user \"NAME\"` or `team NAME`"),
            );
        }
        if !broken && find(|s| matches!(s, ClaimStmt::Contract(_))).is_none() {
            self.out.push(
                Diagnostic::new(
                    codes::MISSING_STATEMENT,
                    self.file,
                    claim.name.span,
                    format!("claim `{}` names no contract", claim.name.text),
                )
                .with_primary_message("no `contract`")
                .with_help("add `contract NAME` (or `contract NAMESPACE.NAME`)"),
            );
        }
        for stmt in &claim.body.stmts {
            if let ClaimStmt::Labels(map) = &stmt.node {
                self.map(map);
            }
        }
    }

    fn label_op(&mut self, op: &LabelOp) {
        if let LabelOp::Set { value, .. } = op {
            self.expr(value);
        }
    }

    /// Reports statements of the same kind given twice in one block.
    fn unique<S>(&mut self, stmts: &[Spanned<S>], kind: impl Fn(&S) -> Option<&'static str>) {
        // A few kinds of statement: a list is quicker than hashing each one.
        let mut seen: Vec<(&'static str, Span)> = Vec::new();
        for stmt in stmts {
            let Some(name) = kind(&stmt.node) else { continue };
            match seen.iter().find(|(seen, _)| *seen == name).map(|(_, span)| span) {
                Some(first) => self.out.push(
                    Diagnostic::new(
                        codes::DUPLICATE_STATEMENT,
                        self.file,
                        stmt.span,
                        format!("`{name}` is given twice"),
                    )
                    .with_primary_message("second one here")
                    .with_label(self.file, *first, "first given here")
                    .with_help(format!("keep one `{name}`")),
                ),
                None => seen.push((name, stmt.span)),
            }
        }
    }

    /// Walks an expression for map literals, whose keys must be unique.
    fn expr(&mut self, expr: &Expr) {
        match &expr.kind {
            ExprKind::Map(map) => self.map(map),
            ExprKind::List(items) => items.iter().for_each(|e| self.expr(e)),
            ExprKind::Call { args, .. } => args.iter().for_each(|e| self.expr(e)),
            ExprKind::Unary { expr, .. } | ExprKind::Paren(expr) => self.expr(expr),
            ExprKind::Binary { lhs, rhs, .. } => {
                self.expr(lhs);
                self.expr(rhs);
            }
            ExprKind::Str(lit) => self.string(lit),
            ExprKind::Int(_) | ExprKind::Bool(_) | ExprKind::Path(_) | ExprKind::Error => {}
        }
    }

    fn string(&mut self, lit: &StrLit) {
        for part in &lit.parts {
            if let StrPart::Interp(e) = part {
                self.expr(e);
            }
        }
    }

    fn map(&mut self, map: &MapLit) {
        let mut seen: FastMap<SmolStr, Span> = FastMap::default();
        for entry in &map.entries {
            let key = match &entry.key {
                MapKey::Name(ident) => Some(ident.text.clone()),
                MapKey::Str(lit) => lit.as_plain().map(SmolStr::from),
            };
            if let Some(key) = key {
                if let Some(first) = seen.get(&key) {
                    self.out.push(
                        Diagnostic::new(
                            codes::DUPLICATE_KEY,
                            self.file,
                            entry.key.span(),
                            format!("key `{key}` appears twice in this map"),
                        )
                        .with_primary_message("again here")
                        .with_label(self.file, *first, "first here")
                        .with_help("remove one of them; a map holds each key once"),
                    );
                } else {
                    seen.insert(key, entry.key.span());
                }
            }
            self.expr(&entry.value);
        }
    }
}

/// A path as written, for comparing references.
fn path_text(path: &Path) -> String {
    path.segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>().join(".")
}
