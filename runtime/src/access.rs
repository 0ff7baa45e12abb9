//! Roles from grants and namespace ownership (docs/language.md §11), in one place for the
//! resolver (who may consume a contract) and for deploys (who may change what).
//!
//! A subject's role on a namespace is the strongest of: `domain_admin` (a grant of it, owning
//! `system` or administering `system`), `namespace_admin` of the namespace (a grant, or owning it
//! through the team), `consumer` (a grant). A policy without grants has access control off: every
//! subject is a domain administrator.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use aptc_compiler::ir::Program;

use crate::resolve::eval::{Env, Subject};

/// The namespace of clusters, global rules, users, teams and grants.
pub const SYSTEM: &str = "system";

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
    granted: Mutex<HashMap<String, Grants>>,
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
        if owns(SYSTEM) {
            return Some(Role::DomainAdmin);
        }
        let mut granted = self.granted.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let grants = granted.entry(subject.name.clone()).or_insert_with(|| {
            let no_labels = BTreeMap::new();
            let env = Env {
                program,
                labels: &no_labels,
                user: subject,
                claim: ("", "", ""),
                placement: None,
                instance: None,
                discovery: None,
                values: None,
            };
            program
                .grants
                .iter()
                .filter(|g| g.criteria.as_ref().is_none_or(|c| env.bool(c).unwrap_or(false)))
                .filter_map(|g| Some((g.namespaces.clone(), Role::parse(&g.role)?)))
                .collect()
        });
        let covers = |namespaces: &Option<Vec<String>>, ns: &str| match namespaces {
            None => ns != SYSTEM,
            Some(list) => list.iter().any(|n| n == ns),
        };
        let administers_system =
            grants.iter().any(|(namespaces, role)| *role >= Role::NamespaceAdmin && covers(namespaces, SYSTEM));
        if administers_system || grants.iter().any(|(_, role)| *role == Role::DomainAdmin) {
            return Some(Role::DomainAdmin);
        }
        let granted_role = grants.iter().filter(|(namespaces, _)| covers(namespaces, namespace)).map(|(_, r)| *r).max();
        let owned = owns(namespace).then_some(Role::NamespaceAdmin);
        granted_role.max(owned)
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
        let needed = if namespace == SYSTEM { Role::DomainAdmin } else { Role::NamespaceAdmin };
        self.role(subject, namespace).is_some_and(|r| r >= needed)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use aptc_compiler::check::load_workspace;
    use aptc_compiler::db::{Database, Settings};
    use aptc_compiler::ir::lower::lower;
    use aptc_compiler::source::SourceMap;

    use super::*;

    /// Lowers a policy of several files (`name`, text).
    pub(crate) fn compile(files: &[(&str, &str)]) -> Program {
        let mut sources = SourceMap::new();
        for (name, text) in files {
            sources.add(name.to_string(), text.to_string());
        }
        let mut db = Database::default();
        let ws = load_workspace(&mut db, &sources, Settings::default());
        match lower(&db, ws) {
            Ok(program) => program,
            Err(errors) => panic!("{}", aptc_compiler::diagnostics::render::render(&sources, &errors, false)),
        }
    }

    const SYSTEM_APT: &str = r#"namespace system

team platform_team
team web_team
team ops_team
user "root" {
    groups ["admins"]
}
user "pat" {
    team platform_team
}
user "wendy" {
    team web_team
}
user "carl" {}
user "olga" {
    team ops_team
}
grant domain_admin when "admins" in user.groups
grant consumer on platform when user.team == "web_team"
grant namespace_admin on system when user.team == "ops_team"
"#;

    #[test]
    fn roles_come_from_grants_and_ownership() {
        let p = compile(&[
            ("system.apt", SYSTEM_APT),
            ("platform.apt", "namespace platform owned_by platform_team\n"),
            ("web.apt", "namespace web owned_by web_team\n"),
        ]);
        let access = Access::new(&p);
        assert!(access.enabled());
        let role = |user: &str, ns: &str| access.role(&access.user(user).unwrap(), ns);
        assert_eq!(role("root", "platform"), Some(Role::DomainAdmin));
        assert_eq!(role("root", SYSTEM), Some(Role::DomainAdmin));
        assert_eq!(role("pat", "platform"), Some(Role::NamespaceAdmin));
        assert_eq!(role("pat", "web"), None);
        assert_eq!(role("wendy", "web"), Some(Role::NamespaceAdmin));
        assert_eq!(role("wendy", "platform"), Some(Role::Consumer));
        assert_eq!(role("carl", "web"), None);
        assert_eq!(role("olga", "web"), Some(Role::DomainAdmin), "administering system is domain admin");
        let wendy = access.user("Wendy").unwrap();
        assert!(access.may_manage(&wendy, "web"));
        assert!(!access.may_manage(&wendy, "platform"));
        assert!(access.may_manage_claims(&wendy, "platform"));
        assert!(access.may_consume(&wendy, "platform"));
        assert!(!access.may_manage(&wendy, SYSTEM));
        assert!(access.user("nobody").is_none());
    }

    #[test]
    fn without_grants_everyone_may_do_everything() {
        let p = compile(&[("system.apt", "namespace system\n\nuser \"carl\" {}\n"), ("web.apt", "namespace web\n")]);
        let access = Access::new(&p);
        assert!(!access.enabled());
        let carl = access.user("carl").unwrap();
        assert!(access.may_manage(&carl, SYSTEM) && access.may_manage(&carl, "web"));
    }
}
