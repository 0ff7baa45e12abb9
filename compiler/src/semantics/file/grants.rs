//! Users and grants (docs/language.md §10–§11): the names they use and what their criteria may
//! read. What the grants give whom is `aptc_core::access`'s, asked by the compiler's `access` checks.

use crate::diagnostics::{Diagnostic, codes};
use crate::syntax::ast::*;

use super::Walker;
use crate::semantics::expr::{Env, Roots};
use crate::semantics::index::Kind;
use crate::semantics::scope::{closest, did_you_mean};
use crate::semantics::types::Ty;

impl Walker<'_, '_> {
    pub(super) fn user(&mut self, user: &User) {
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
                UserStmt::Labels(map) => {
                    self.label_map(map, "a user's labels");
                }
                UserStmt::Error => {}
            }
        }
    }

    pub(super) fn grant(&mut self, grant: &Grant) {
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
