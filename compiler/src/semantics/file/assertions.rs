//! Assertions (docs/language.md §19): the names their `for` and `expect` statements use, and the
//! types of their expressions.

use crate::diagnostics::{Diagnostic, codes};
use crate::semantics::expr::{Env, Roots};
use crate::semantics::index::Kind;
use crate::semantics::scope::Lookup;
use crate::syntax::ast::*;

use super::Walker;

/// `when`: over the claim's initial labels, its consumer and itself, as a context's criterion.
const WHEN_ENV: Env = Env { roots: Roots::CONTRACT, place: "an assertion's `when`", components: None };
/// `expect that`: at the claimed contract, once placed.
const THAT_ENV: Env = Env { roots: Roots::PLACED, place: "an assertion's `expect that`", components: None };

impl Walker<'_, '_> {
    /// An assertion: its consumers, contracts, clusters and targets resolve; its expressions are
    /// `bool`s of the scope they are evaluated in.
    pub(super) fn assertion(&mut self, assert: &AssertBlock) {
        for stmt in &assert.body.stmts {
            match &stmt.node {
                AssertStmt::For(clause) => match clause {
                    ForClause::User(lit) => self.user_named(lit),
                    ForClause::TeamUsers(team) | ForClause::Team(team) => {
                        self.reference(Kind::Team, std::slice::from_ref(team), team.span);
                    }
                    ForClause::Group(lit) => {
                        self.c.plain(lit, "a group name");
                    }
                    ForClause::Contract(path) => {
                        self.reference(Kind::Contract, &path.segments, path.span);
                    }
                },
                AssertStmt::When(e) => self.c.condition(e, &WHEN_ENV, "an assertion's `when`"),
                AssertStmt::Expect(a) => match &a.node {
                    Assertion::Resolved | Assertion::Rejected | Assertion::Failed => {}
                    Assertion::PlacedOn(clusters) => {
                        for cluster in clusters {
                            self.reference(Kind::Cluster, &cluster.segments, cluster.span);
                        }
                    }
                    Assertion::Reaches { target, .. } => self.reach_target(target),
                    Assertion::Shares { with, .. } => match with {
                        Party::User(lit) => self.user_named(lit),
                        Party::Team(team) => {
                            self.reference(Kind::Team, std::slice::from_ref(team), team.span);
                        }
                        Party::Others => {}
                    },
                    Assertion::That(e) => self.c.condition(e, &THAT_ENV, "an assertion's `expect that`"),
                },
                AssertStmt::Error => {}
            }
        }
    }

    /// A user named by a plain string, which must be declared.
    fn user_named(&mut self, lit: &StrLit) {
        if let Some(name) = self.c.plain(lit, "a user name") {
            let ident = Ident { text: name.into(), span: lit.span };
            self.reference(Kind::User, std::slice::from_ref(&ident), lit.span);
        }
    }

    /// What `reaches` names: a contract, else a service, else `SERVICE.COMPONENT`.
    fn reach_target(&mut self, path: &Path) {
        let texts: Vec<&str> = path.segments.iter().map(|s| s.text.as_str()).collect();
        for kind in [Kind::Contract, Kind::Service] {
            if let Lookup::Found(..) = self.c.scope.resolve(kind, &texts) {
                self.reference(kind, &path.segments, path.span);
                return;
            }
        }
        if path.segments.len() >= 2 {
            self.test_component(path);
            return;
        }
        self.c.report(
            Diagnostic::new(
                codes::UNRESOLVED_NAME,
                self.c.file,
                path.span,
                format!("no contract, service or component named `{}` is visible here", texts.join(".")),
            )
            .with_primary_message("unknown target")
            .with_help("name a contract, a service, or a component as `SERVICE.COMPONENT`"),
        );
    }
}
