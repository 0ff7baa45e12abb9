//! Ownership and access control, checked statically (docs/language.md §11).
//!
//! Roles are not computed here: the grants, users, teams and owners are lowered to the IR
//! (`lower::access_program`) and `aptc_core::access` answers, exactly as it does for the resolver
//! and for deploys. What is here is what to report: every claim's consumer must be able to consume
//! in each namespace its contract tree can enter (APT0501), and with `aptc check --as USER`, every
//! object the user may not manage is reported (APT0502).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use aptc_core::access::{Access, Role};
use aptc_core::eval::Subject;
use aptc_core::ir::{Program, SYSTEM_NAMESPACE};

use crate::FastMap;
use crate::db::{Workspace, parse_file, report};
use crate::diagnostics::{Diagnostic, codes};
use crate::syntax::ast::*;

use crate::semantics::file::Consumer;
use crate::semantics::index::{Kind, ObjectRef, file_summary, workspace_index};
use crate::semantics::scope::{closest, did_you_mean};
use crate::semantics::{all_facts, definition_sites};

/// A subject's roles on every namespace the checks ask about, as `Access::role` gives them.
/// Compared whole, so subjects with the same roles (most users share their team's) share one
/// walk of each contract tree.
#[derive(Debug, PartialEq, Eq)]
struct Roles(BTreeMap<SmolStr, Option<Role>>);

impl Roles {
    fn on(&self, namespace: &str) -> Option<Role> {
        self.0.get(namespace).copied().flatten()
    }
}

/// Access checks of the workspace.
#[salsa::tracked]
pub fn check_acl(db: &dyn salsa::Database, ws: Workspace) {
    let program = crate::lower::access_program(db, ws);
    let access = Access::new(&program);
    // Access control is opt-in: a policy without grants gives everyone every right.
    if !access.enabled() {
        check_acting_user(db, ws, &program, |_| {});
        return;
    }
    check_consumers(db, ws, &access);
    check_acting_user(db, ws, &program, |subject| check_managers(db, ws, &access, subject));
}

/// With `--as USER`: the user must exist (APT0503); `then` checks what they may change.
fn check_acting_user(db: &dyn salsa::Database, ws: Workspace, program: &Program, then: impl FnOnce(&Subject)) {
    let Some(acting) = ws.settings(db).acting_user.clone() else { return };
    if let Some(subject) = Access::new(program).user(&acting) {
        then(&subject);
        return;
    }
    let names: Vec<SmolStr> = program.users.values().map(|u| SmolStr::new(&u.name)).collect();
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

/// Every claim's consumer may consume in every namespace its contract tree may enter.
fn check_consumers(db: &dyn salsa::Database, ws: Workspace, access: &Access) {
    let facts = all_facts(db, ws);
    let mut edges: BTreeMap<ObjectRef, BTreeSet<ObjectRef>> = BTreeMap::new();
    for (_, f) in &facts {
        for (from, to) in f.contract_uses.iter().chain(&f.service_uses) {
            edges.entry(from.clone()).or_default().insert(to.clone());
        }
    }
    // Every namespace a contract tree can enter.
    let namespaces: BTreeSet<&SmolStr> = edges
        .iter()
        .flat_map(|(from, to)| std::iter::once(from).chain(to))
        .chain(facts.iter().flat_map(|(_, f)| f.claims.iter().filter_map(|c| c.contract.as_ref())))
        .map(|node| &node.namespace)
        .collect();
    // By user name and team.
    type Cache = RefCell<BTreeMap<(String, Option<String>), Rc<Roles>>>;
    let cache: Cache = Default::default();
    let distinct: RefCell<Vec<Rc<Roles>>> = Default::default();
    let roles_of = |subject: &Subject| {
        let key = (subject.name.clone(), subject.team.clone());
        let cached = cache.borrow().get(&key).cloned();
        cached.unwrap_or_else(|| {
            // The roles of a subject are the long part of this query (not a query of their
            // own): an edit that makes the answer obsolete stops it here (issue #13).
            db.unwind_if_revision_cancelled();
            let computed = Roles(namespaces.iter().map(|&ns| (ns.clone(), access.role(subject, ns))).collect());
            let shared = distinct.borrow().iter().find(|r| ***r == computed).cloned();
            let shared = shared.unwrap_or_else(|| {
                let fresh = Rc::new(computed);
                distinct.borrow_mut().push(fresh.clone());
                fresh
            });
            cache.borrow_mut().insert(key, shared.clone());
            shared
        })
    };
    let sites = definition_sites(db, ws);
    let index = workspace_index(db, ws);
    let mut reach = Reach { edges: &edges, memo: HashMap::new() };
    // Each consumer's subject and roles, asked once: a consumer files many claims.
    let mut subjects: FastMap<&Consumer, Option<(Subject, Rc<Roles>)>> = FastMap::default();
    for (file, f) in &facts {
        db.unwind_if_revision_cancelled();
        let Some((namespace, _)) = index.files.get(file) else { continue };
        for claim in &f.claims {
            let (Some(consumer), Some(contract)) = (&claim.consumer, &claim.contract) else { continue };
            let known = subjects.entry(consumer).or_insert_with(|| {
                let subject = match consumer {
                    Consumer::User(name) => access.user(name),
                    Consumer::Team(name) => access.team(name),
                }?;
                let roles = roles_of(&subject);
                Some((subject, roles))
            });
            let Some((subject, roles)) = known else { continue };
            if reach.allowed(roles, contract) {
                continue;
            }
            let denied: Vec<SmolStr> = reach.denied(roles, contract).into_iter().collect();
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
fn check_managers(db: &dyn salsa::Database, ws: Workspace, access: &Access, subject: &Subject) {
    for &file in ws.files(db) {
        let Some(namespace) = file_summary(db, file).namespace.clone() else { continue };
        if namespace == "std" {
            continue;
        }
        let role = access.role(subject, &namespace);
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
        // An assertion deploys nothing either.
        ItemKind::Assert(a) => (
            format!("assertion `{}`", a.name.text),
            a.name.span,
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
