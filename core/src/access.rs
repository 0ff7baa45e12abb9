//! Roles from grants and namespace ownership (docs/language.md §11), in one place for the
//! resolver (who may consume a contract) and for deploys (who may change what).
//!
//! A subject's role on a namespace is the strongest of: `domain_admin` (a grant of it, owning
//! `system` or administering `system`), `namespace_admin` of the namespace (a grant, or owning it
//! through the team), `consumer` (a grant). A policy without grants has access control off: every
//! subject is a domain administrator.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::FastMap;
use crate::eval::{Env, Subject};
use crate::ir::{Program, SYSTEM_NAMESPACE};

/// A role on a namespace, weakest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Consumer,
    NamespaceAdmin,
    DomainAdmin,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Consumer => "consumer",
            Role::NamespaceAdmin => "namespace_admin",
            Role::DomainAdmin => "domain_admin",
        }
    }

    fn parse(text: &str) -> Option<Role> {
        match text {
            "consumer" => Some(Role::Consumer),
            "namespace_admin" => Some(Role::NamespaceAdmin),
            "domain_admin" => Some(Role::DomainAdmin),
            _ => None,
        }
    }
}

/// The grants whose criteria hold for a subject: (namespaces, role).
type Grants = Vec<(Option<Vec<String>>, Role)>;

/// The roles of subjects under one program's grants (each subject's grants evaluated once).
pub struct Access<'a> {
    program: &'a Program,
    granted: Mutex<FastMap<String, Grants>>,
}

impl<'a> Access<'a> {
    pub fn new(program: &'a Program) -> Access<'a> {
        Access { program, granted: Default::default() }
    }

    /// Whether access control is on: the policy declares at least one grant.
    pub fn enabled(&self) -> bool {
        !self.program.grants.is_empty()
    }

    /// A declared user (by name, any case) as grants see it: team labels, overridden by the
    /// user's own.
    pub fn user(&self, name: &str) -> Option<Subject> {
        let user = self.program.users.get(&name.to_lowercase())?;
        let mut labels =
            user.team.as_ref().and_then(|t| self.program.teams.get(t)).map(|t| t.labels.clone()).unwrap_or_default();
        labels.extend(user.labels.clone());
        Some(Subject { name: user.name.clone(), team: user.team.clone(), groups: user.groups.clone(), labels })
    }

    /// A team as grants see it (for a team's claims).
    pub fn team(&self, name: &str) -> Option<Subject> {
        let team = self.program.teams.get(name)?;
        Some(Subject {
            name: name.to_string(),
            team: Some(name.to_string()),
            groups: Vec::new(),
            labels: team.labels.clone(),
        })
    }

    /// The subject's role on `namespace` (`DomainAdmin` for everyone when access control is off).
    pub fn role(&self, subject: &Subject, namespace: &str) -> Option<Role> {
        let program = self.program;
        if !self.enabled() {
            return Some(Role::DomainAdmin);
        }
        let owns = |ns: &str| {
            subject.team.is_some() && program.namespaces.get(ns).and_then(|o| o.as_ref()) == subject.team.as_ref()
        };
        // Owning `system` (or administering it) is administering everything.
        if owns(SYSTEM_NAMESPACE) {
            return Some(Role::DomainAdmin);
        }
        let mut granted = self.granted.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !granted.contains_key(subject.name.as_str()) {
            let grants = self.grants_of(subject);
            granted.insert(subject.name.clone(), grants);
        }
        let grants = &granted[subject.name.as_str()];
        let covers = |namespaces: &Option<Vec<String>>, ns: &str| match namespaces {
            None => ns != SYSTEM_NAMESPACE,
            Some(list) => list.iter().any(|n| n == ns),
        };
        let administers_system = grants
            .iter()
            .any(|(namespaces, role)| *role >= Role::NamespaceAdmin && covers(namespaces, SYSTEM_NAMESPACE));
        if administers_system || grants.iter().any(|(_, role)| *role == Role::DomainAdmin) {
            return Some(Role::DomainAdmin);
        }
        let granted_role = grants.iter().filter(|(namespaces, _)| covers(namespaces, namespace)).map(|(_, r)| *r).max();
        let owned = owns(namespace).then_some(Role::NamespaceAdmin);
        granted_role.max(owned)
    }

    /// The grants whose criteria hold for `subject`.
    fn grants_of(&self, subject: &Subject) -> Grants {
        let program = self.program;
        let no_labels = BTreeMap::new();
        let env = Env::of_labels(program, &no_labels, subject);
        program
            .grants
            .iter()
            .filter(|g| g.criteria.as_ref().is_none_or(|c| env.bool(c).unwrap_or(false)))
            .filter_map(|g| Some((g.namespaces.clone(), Role::parse(&g.role)?)))
            .collect()
    }

    /// May consume contracts of `namespace` (any role).
    pub fn may_consume(&self, subject: &Subject, namespace: &str) -> bool {
        self.role(subject, namespace).is_some()
    }

    /// May manage claims in `namespace` (any role, §11.2).
    pub fn may_manage_claims(&self, subject: &Subject, namespace: &str) -> bool {
        self.role(subject, namespace).is_some()
    }

    /// May manage labels, services, contracts and rules of `namespace` (`namespace_admin` or
    /// more; `system` needs `domain_admin`).
    pub fn may_manage(&self, subject: &Subject, namespace: &str) -> bool {
        let needed = if namespace == SYSTEM_NAMESPACE { Role::DomainAdmin } else { Role::NamespaceAdmin };
        self.role(subject, namespace).is_some_and(|r| r >= needed)
    }
}
