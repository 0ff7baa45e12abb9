//! Ownership and access control, checked statically (docs/language.md §11).
//!
//! Grants are evaluated for every user the policy declares (their criteria read only `user`,
//! whose fields are constants in the policy). Then: every claim's consumer must be able to
//! consume in each namespace its contract tree can enter (APT0501), and with
//! `aptc check --as USER`, every object the user may not manage is reported (APT0502).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use crate::db::{Workspace, parse_file, report};
use crate::diagnostics::{Diagnostic, codes};
use crate::syntax::ast::*;

use super::file::Consumer;
use super::index::{Kind, ObjectRef, file_summary, map_key_text, workspace_index};
use aptc_core::ir::SYSTEM_NAMESPACE;

use super::scope::{closest, did_you_mean};
use super::{all_facts, definition_sites};

/// A role, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Consumer,
    NamespaceAdmin,
    DomainAdmin,
}

/// A user (or a team, for team claims) as grants see it.
#[derive(Clone, Debug, Default)]
pub struct Subject {
    pub name: String,
    pub team: Option<SmolStr>,
    pub groups: Vec<String>,
    pub labels: BTreeMap<SmolStr, Value>,
}

/// A constant value of the grant evaluator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    List(Vec<Value>),
}

struct GrantRule<'a> {
    role: Role,
    /// `None`: every namespace but `system`.
    namespaces: Option<Vec<SmolStr>>,
    criteria: Option<&'a Expr>,
}

/// The roles of a subject on every namespace.
#[derive(Debug, PartialEq, Eq)]
pub struct Roles {
    domain_admin: bool,
    by_namespace: BTreeMap<SmolStr, Role>,
    other_namespaces: Option<Role>,
}

impl Roles {
    /// The subject's role on `namespace`, if any.
    pub fn on(&self, namespace: &str) -> Option<Role> {
        if self.domain_admin {
            return Some(Role::DomainAdmin);
        }
        let specific = self.by_namespace.get(namespace).copied();
        let general = if namespace == SYSTEM_NAMESPACE { None } else { self.other_namespaces };
        specific.max(general)
    }
}

/// Access checks of the workspace.
#[salsa::tracked]
pub fn check_acl(db: &dyn salsa::Database, ws: Workspace) {
    let mut users: BTreeMap<String, Subject> = BTreeMap::new();
    let mut teams: BTreeMap<SmolStr, Subject> = BTreeMap::new();
    let mut grants: Vec<GrantRule> = Vec::new();
    let mut owners: BTreeMap<SmolStr, SmolStr> = BTreeMap::new();
    for &file in ws.files(db) {
        for item in &parse_file(db, file).file.items {
            match &item.kind {
                ItemKind::Namespace(ns) => {
                    if let Some(owner) = &ns.owner {
                        owners.entry(ns.name.text.clone()).or_insert_with(|| owner.text.clone());
                    }
                }
                ItemKind::User(user) => {
                    let Some(name) = user.name.as_plain() else { continue };
                    let mut subject = Subject { name: name.clone(), ..Subject::default() };
                    for stmt in user.body.iter().flat_map(|b| &b.stmts) {
                        match &stmt.node {
                            UserStmt::Team(team) => subject.team = Some(team.text.clone()),
                            UserStmt::Groups(groups) => {
                                subject.groups = groups.iter().filter_map(super::expr::constant_string).collect()
                            }
                            UserStmt::Labels(map) => subject.labels.extend(constant_map(map)),
                            UserStmt::Error => {}
                        }
                    }
                    users.insert(name.to_lowercase(), subject);
                }
                ItemKind::Team(team) => {
                    let mut subject = Subject {
                        name: team.name.text.to_string(),
                        team: Some(team.name.text.clone()),
                        ..Subject::default()
                    };
                    for stmt in team.body.iter().flat_map(|b| &b.stmts) {
                        if let TeamStmt::Labels(map) = &stmt.node {
                            subject.labels.extend(constant_map(map));
                        }
                    }
                    teams.insert(team.name.text.clone(), subject);
                }
                ItemKind::Grant(grant) => {
                    let role = match grant.role.text.as_str() {
                        "domain_admin" => Role::DomainAdmin,
                        "namespace_admin" => Role::NamespaceAdmin,
                        "consumer" => Role::Consumer,
                        _ => continue,
                    };
                    let namespaces = match grant.scope.as_ref().map(|s| &s.node) {
                        Some(GrantScope::Namespaces(list)) => Some(list.iter().map(|i| i.text.clone()).collect()),
                        _ => None,
                    };
                    grants.push(GrantRule { role, namespaces, criteria: grant.criteria.as_ref() });
                }
                _ => {}
            }
        }
    }
    for user in super::users::external_users(db, ws) {
        let subject = Subject {
            name: user.name.clone(),
            team: user.team.clone(),
            groups: user.groups.clone(),
            labels: user.labels.iter().cloned().collect(),
        };
        users.entry(user.name.to_lowercase()).or_insert(subject);
    }
    // Access control is opt-in: a policy without grants gives everyone every right.
    if grants.is_empty() {
        check_acting_user(db, ws, &users, |_| {});
        return;
    }
    // A user's team labels lie under the user's own.
    for user in users.values_mut() {
        if let Some(team) = user.team.as_ref().and_then(|t| teams.get(t)) {
            for (key, value) in &team.labels {
                user.labels.entry(key.clone()).or_insert_with(|| value.clone());
            }
        }
    }
    let cache: RefCell<RolesCache> = Default::default();
    let distinct: RefCell<Vec<Rc<Roles>>> = Default::default();
    let roles_of = |subject: &Subject| {
        let key = (subject.name.clone(), subject.team.clone());
        let cached = cache.borrow().get(&key).cloned();
        cached.unwrap_or_else(|| {
            let computed = roles(subject, &grants, &owners);
            let shared = distinct.borrow().iter().find(|r: &&Rc<Roles>| ***r == computed).cloned();
            let shared = shared.unwrap_or_else(|| {
                let fresh = Rc::new(computed);
                distinct.borrow_mut().push(fresh.clone());
                fresh
            });
            cache.borrow_mut().insert(key, shared.clone());
            shared
        })
    };
    check_consumers(db, ws, &users, &teams, &roles_of);
    check_acting_user(db, ws, &users, |subject| check_managers(db, ws, subject, &roles_of(subject)));
}

/// Roles computed so far, by subject (name and team).
type RolesCache = BTreeMap<(String, Option<SmolStr>), Rc<Roles>>;

/// With `--as USER`: the user must exist (APT0503); `then` checks what they may change.
fn check_acting_user(
    db: &dyn salsa::Database,
    ws: Workspace,
    users: &BTreeMap<String, Subject>,
    then: impl FnOnce(&Subject),
) {
    let Some(acting) = ws.settings(db).acting_user.clone() else { return };
    if let Some(subject) = users.get(&acting.to_lowercase()) {
        then(subject);
        return;
    }
    let names: Vec<SmolStr> = users.values().map(|u| SmolStr::new(&u.name)).collect();
    let help = did_you_mean(&closest(&acting, names.iter())).unwrap_or_else(|| {
        "`--as` names a user declared with `user \"NAME\"` in namespace `system`, or in a users file".to_string()
    });
    let Some(&first) = ws.files(db).first() else { return };
    report(
        db,
        Diagnostic::new(
            codes::UNKNOWN_ACTING_USER,
            first.id(db),
            Span::default(),
            format!("`--as {acting}`: the policy declares no such user"),
        )
        .with_help(help),
    );
}

fn roles(subject: &Subject, grants: &[GrantRule], owners: &BTreeMap<SmolStr, SmolStr>) -> Roles {
    let mut roles = Roles { domain_admin: false, by_namespace: BTreeMap::new(), other_namespaces: None };
    for (namespace, owner) in owners {
        if subject.team.as_ref() == Some(owner) {
            roles.by_namespace.insert(namespace.clone(), Role::NamespaceAdmin);
        }
    }
    for grant in grants {
        let applies = grant.criteria.is_none_or(|criteria| eval(criteria, subject) == Some(Value::Bool(true)));
        if !applies {
            continue;
        }
        match (&grant.namespaces, grant.role) {
            (_, Role::DomainAdmin) => roles.domain_admin = true,
            (None, role) => roles.other_namespaces = roles.other_namespaces.max(Some(role)),
            (Some(list), role) => {
                for namespace in list {
                    let entry = roles.by_namespace.entry(namespace.clone()).or_insert(role);
                    *entry = (*entry).max(role);
                }
            }
        }
    }
    // Administering `system` means administering everything (its grants included).
    if roles.by_namespace.get(SYSTEM_NAMESPACE).is_some_and(|r| *r >= Role::NamespaceAdmin) {
        roles.domain_admin = true;
    }
    roles
}

/// Every claim's consumer may consume in every namespace its contract tree may enter.
fn check_consumers(
    db: &dyn salsa::Database,
    ws: Workspace,
    users: &BTreeMap<String, Subject>,
    teams: &BTreeMap<SmolStr, Subject>,
    roles_of: &dyn Fn(&Subject) -> Rc<Roles>,
) {
    let facts = all_facts(db, ws);
    let mut edges: BTreeMap<ObjectRef, BTreeSet<ObjectRef>> = BTreeMap::new();
    for (_, f) in &facts {
        for (from, to) in f.contract_uses.iter().chain(&f.service_uses) {
            edges.entry(from.clone()).or_default().insert(to.clone());
        }
    }
    let sites = definition_sites(db, ws);
    let index = workspace_index(db, ws);
    let mut reach = Reach { edges: &edges, memo: HashMap::new() };
    for (file, f) in &facts {
        let Some((namespace, _)) = index.files.get(file) else { continue };
        for claim in &f.claims {
            let (Some(consumer), Some(contract)) = (&claim.consumer, &claim.contract) else { continue };
            let subject = match consumer {
                Consumer::User(name) => users.get(name.as_str()),
                Consumer::Team(name) => teams.get(name),
            };
            let Some(subject) = subject else { continue };
            let roles = roles_of(subject);
            if reach.allowed(&roles, contract) {
                continue;
            }
            let denied: Vec<SmolStr> = reach.denied(&roles, contract).into_iter().collect();
            let site = ObjectRef { kind: Kind::Claim, namespace: namespace.clone(), name: claim.name.clone() };
            let Some(&(claim_file, span)) = sites.get(&site).and_then(|s| s.first()) else { continue };
            let listed: Vec<String> = denied.iter().map(|ns| format!("`{ns}`")).collect();
            let who = match consumer {
                Consumer::User(_) => format!("user `{}`", subject.name),
                Consumer::Team(_) => format!("team `{}`", subject.name),
            };
            report(
                db,
                Diagnostic::new(
                    codes::MAY_NOT_CONSUME,
                    claim_file,
                    span,
                    format!(
                        "{who} may not consume in namespace {} that claim `{}` reaches",
                        listed.join(", "),
                        claim.name
                    ),
                )
                .with_primary_message(format!("contract `{contract}` leads into {}", listed.join(", ")))
                .with_help(format!(
                    "grant the consumer role, e.g. `grant consumer on {} when …` in namespace `system`",
                    denied.join(", ")
                )),
            );
        }
    }
}

/// Whether a set of roles may consume everything reachable from a contract. Memoised per
/// distinct set of roles (most users share theirs with their team), so deep contract trees
/// cost one walk per role set, not one per claim.
struct Reach<'a> {
    edges: &'a BTreeMap<ObjectRef, BTreeSet<ObjectRef>>,
    memo: HashMap<(*const Roles, &'a ObjectRef), bool>,
}

impl<'a> Reach<'a> {
    fn allowed(&mut self, roles: &Rc<Roles>, node: &'a ObjectRef) -> bool {
        let key = (Rc::as_ptr(roles), node);
        if let Some(&known) = self.memo.get(&key) {
            return known;
        }
        // Provisionally true: a cycle (reported elsewhere) is cut where it closes.
        self.memo.insert(key, true);
        let here = node.kind != Kind::Contract || roles.on(&node.namespace).is_some();
        let allowed = here && self.edges.get(node).into_iter().flatten().all(|next| self.allowed(roles, next));
        self.memo.insert(key, allowed);
        allowed
    }

    /// The namespaces that deny consuming, for the message (the rare path).
    fn denied(&self, roles: &Roles, start: &ObjectRef) -> BTreeSet<SmolStr> {
        let mut seen: BTreeSet<&ObjectRef> = BTreeSet::new();
        let mut stack = vec![start];
        let mut denied = BTreeSet::new();
        while let Some(node) = stack.pop() {
            if !seen.insert(node) {
                continue;
            }
            if node.kind == Kind::Contract && roles.on(&node.namespace).is_none() {
                denied.insert(node.namespace.clone());
            }
            stack.extend(self.edges.get(node).into_iter().flatten());
        }
        denied
    }
}

/// With `--as USER`: every object the user may not define or change (APT0502).
fn check_managers(db: &dyn salsa::Database, ws: Workspace, subject: &Subject, roles: &Roles) {
    for &file in ws.files(db) {
        let Some(namespace) = file_summary(db, file).namespace.clone() else { continue };
        if namespace == "std" {
            continue;
        }
        let role = roles.on(&namespace);
        for item in &parse_file(db, file).file.items {
            let Some((what, span, needed)) = managed(&item.kind, &namespace) else { continue };
            if role >= Some(needed) {
                continue;
            }
            let needed_text = match needed {
                Role::DomainAdmin => "domain_admin".to_string(),
                Role::NamespaceAdmin => format!("namespace_admin on `{namespace}`"),
                Role::Consumer => format!("consumer on `{namespace}`"),
            };
            report(
                db,
                Diagnostic::new(
                    codes::MAY_NOT_MANAGE,
                    file.id(db),
                    span,
                    format!("user `{}` may not define or change {what} in namespace `{namespace}`", subject.name),
                )
                .with_primary_message(format!("needs {needed_text}"))
                .with_help(format!(
                    "ask an administrator of `{namespace}` to make this change, or for the role ({needed_text})"
                )),
            );
        }
    }
}

/// What an item is, where its name is, and the role needed to manage it.
fn managed(item: &ItemKind, namespace: &str) -> Option<(String, Span, Role)> {
    let admin = if namespace == SYSTEM_NAMESPACE { Role::DomainAdmin } else { Role::NamespaceAdmin };
    let (what, span, role) = match item {
        ItemKind::Label(l) => (format!("label `{}`", l.name.text), l.name.span, admin),
        ItemKind::Service(s) => (format!("service `{}`", s.name.text), s.name.span, admin),
        ItemKind::Contract(c) => (format!("contract `{}`", c.name.text), c.name.span, admin),
        ItemKind::Rule(r) => (format!("rule `{}`", r.name.text), r.name.span, admin),
        ItemKind::Claim(c) => (
            format!("claim `{}`", c.name.text),
            c.name.span,
            if admin == Role::DomainAdmin { admin } else { Role::Consumer },
        ),
        // A test deploys nothing: whoever may manage the namespace's claims may manage its tests.
        ItemKind::Test(t) => (
            format!("test `{}`", t.name.text),
            t.name.span,
            if admin == Role::DomainAdmin { admin } else { Role::Consumer },
        ),
        ItemKind::Cluster(c) => (format!("cluster `{}`", c.name.text), c.name.span, Role::DomainAdmin),
        ItemKind::User(u) => {
            (format!("user \"{}\"", u.name.as_plain().unwrap_or_default()), u.name.span, Role::DomainAdmin)
        }
        ItemKind::Team(t) => (format!("team `{}`", t.name.text), t.name.span, Role::DomainAdmin),
        ItemKind::Grant(g) => (format!("a grant of `{}`", g.role.text), g.role.span, Role::DomainAdmin),
        ItemKind::UsersFrom(u) => ("a users file".to_string(), u.path.span, Role::DomainAdmin),
        _ => return None,
    };
    Some((what, span, role))
}

fn constant_map(map: &MapLit) -> Vec<(SmolStr, Value)> {
    map.entries.iter().filter_map(|e| Some((map_key_text(&e.key)?, constant(&e.value)?))).collect()
}

fn constant(expr: &Expr) -> Option<Value> {
    Some(match &expr.kind {
        ExprKind::Int(n) => Value::Int(*n),
        ExprKind::Bool(b) => Value::Bool(*b),
        ExprKind::Str(lit) => Value::Str(lit.as_plain()?),
        ExprKind::List(items) => Value::List(items.iter().map(constant).collect::<Option<_>>()?),
        ExprKind::Paren(inner) => constant(inner)?,
        _ => return None,
    })
}

/// Evaluates a grant's criteria for a subject; `None` when it reads something unset or
/// uses what grants cannot (the grant then does not apply).
pub fn eval(expr: &Expr, subject: &Subject) -> Option<Value> {
    Some(match &expr.kind {
        ExprKind::Path(path) => {
            let segments: Vec<&str> = path.segments.iter().map(|s| s.text.as_str()).collect();
            match segments.as_slice() {
                ["user", "name"] => Value::Str(subject.name.clone()),
                ["user", "team"] => Value::Str(subject.team.as_ref()?.to_string()),
                ["user", "groups"] => Value::List(subject.groups.iter().cloned().map(Value::Str).collect()),
                ["user", "labels", key] => subject.labels.get(*key)?.clone(),
                _ => return None,
            }
        }
        ExprKind::Unary { op: UnaryOp::Not, expr } => match eval(expr, subject)? {
            Value::Bool(b) => Value::Bool(!b),
            _ => return None,
        },
        ExprKind::Unary { op: UnaryOp::Neg, expr } => match eval(expr, subject)? {
            Value::Int(n) => Value::Int(n.checked_neg()?),
            _ => return None,
        },
        ExprKind::Binary { op: BinaryOp::And, lhs, rhs } => match eval(lhs, subject)? {
            Value::Bool(false) => Value::Bool(false),
            Value::Bool(true) => eval(rhs, subject)?,
            _ => return None,
        },
        ExprKind::Binary { op: BinaryOp::Or, lhs, rhs } => match eval(lhs, subject)? {
            Value::Bool(true) => Value::Bool(true),
            Value::Bool(false) => eval(rhs, subject)?,
            _ => return None,
        },
        ExprKind::Binary { op, lhs, rhs } => {
            let (a, b) = (eval(lhs, subject)?, eval(rhs, subject)?);
            Value::Bool(match (op, &a, &b) {
                (BinaryOp::Eq, _, _) => a == b,
                (BinaryOp::Ne, _, _) => a != b,
                (BinaryOp::In, _, Value::List(items)) => items.contains(&a),
                (BinaryOp::NotIn, _, Value::List(items)) => !items.contains(&a),
                (BinaryOp::Lt, Value::Int(x), Value::Int(y)) => x < y,
                (BinaryOp::Le, Value::Int(x), Value::Int(y)) => x <= y,
                (BinaryOp::Gt, Value::Int(x), Value::Int(y)) => x > y,
                (BinaryOp::Ge, Value::Int(x), Value::Int(y)) => x >= y,
                (BinaryOp::Lt, Value::Str(x), Value::Str(y)) => x < y,
                (BinaryOp::Le, Value::Str(x), Value::Str(y)) => x <= y,
                (BinaryOp::Gt, Value::Str(x), Value::Str(y)) => x > y,
                (BinaryOp::Ge, Value::Str(x), Value::Str(y)) => x >= y,
                _ => return None,
            })
        }
        ExprKind::Paren(inner) => eval(inner, subject)?,
        _ => constant(expr)?,
    })
}
