//! Test blocks (docs/language.md §18): their own users and claims, and the names their
//! expectations use.

use std::collections::HashMap;

use crate::diagnostics::{Diagnostic, codes};
use crate::syntax::ast::*;

use super::Walker;
use crate::semantics::expr::{Env, Roots};
use crate::semantics::index::{Kind, ObjectRef};
use crate::semantics::scope::{closest, did_you_mean};

impl Walker<'_, '_> {
    /// A test: its own users and claims (which must not clash with each other or with the
    /// policy's), and every name its expectations use. Its claims are not facts of the file:
    /// they exist only while the test runs, so no whole-policy check sees them.
    pub(super) fn test(&mut self, test: &TestBlock) {
        let namespace = self.namespace();
        let index = self.c.scope.index;
        let mut users: HashMap<String, Span> = HashMap::new();
        let mut claims: HashMap<SmolStr, Span> = HashMap::new();
        for stmt in &test.body.stmts {
            let (what, name, key, span, in_policy) = match &stmt.node {
                TestStmt::User(user) => {
                    let Some(name) = user.name.as_plain() else { continue };
                    let key = name.to_lowercase();
                    let in_policy = index.has(Kind::User, "", &key);
                    ("user", name, key, user.name.span, in_policy)
                }
                TestStmt::Claim(claim) => {
                    let name = claim.name.text.to_string();
                    let in_policy = index.has(Kind::Claim, &namespace, &name);
                    ("claim", name.clone(), name, claim.name.span, in_policy)
                }
                _ => continue,
            };
            let first = match what {
                "user" => users.get(&key).copied(),
                _ => claims.get(key.as_str()).copied(),
            };
            if let Some(first) = first {
                self.c.report(
                    Diagnostic::new(
                        codes::DUPLICATE_DEFINITION,
                        self.c.file,
                        span,
                        format!("{what} `{name}` is declared twice in test `{}`", test.name.text),
                    )
                    .with_primary_message("declared again here")
                    .with_label(self.c.file, first, "first declared here")
                    .with_help("rename one of them, or remove the second"),
                );
            } else if in_policy {
                let where_ = if what == "user" { "the policy".to_string() } else { format!("namespace `{namespace}`") };
                self.c.report(
                    Diagnostic::new(
                        codes::DUPLICATE_DEFINITION,
                        self.c.file,
                        span,
                        format!("{what} `{name}` is already declared in {where_}"),
                    )
                    .with_primary_message(format!("a test's {what} is added to the policy's"))
                    .with_help(format!(
                        "give the test's {what} a name of its own; expectations may name the policy's {what}s directly"
                    )),
                );
            } else if what == "user" {
                users.insert(key, span);
            } else {
                claims.insert(key.into(), span);
            }
        }
        for stmt in &test.body.stmts {
            match &stmt.node {
                TestStmt::User(user) => self.user(user),
                TestStmt::Claim(claim) => {
                    self.claim(claim, Some(&users));
                }
                TestStmt::Expect(expect) => self.expectation(expect, &claims),
                TestStmt::Error => {}
            }
        }
    }

    pub(super) fn expectation(&mut self, expect: &Expect, claims: &HashMap<SmolStr, Span>) {
        match expect {
            Expect::Claim(e) => {
                self.test_claim(&e.claim, claims);
                if let ClaimOutcome::Rejected { pattern: Some(pattern) } = &e.outcome.node
                    && let Some(text) = self.c.plain(pattern, "a `matches` pattern")
                {
                    self.c.regex(&text, pattern.span);
                }
            }
            Expect::Instance(e) => {
                let service = self.test_component(&e.component);
                self.test_claim(&e.claim, claims);
                let values = Env { roots: Roots::CONSTANT, place: "an expected value", components: None };
                for stmt in e.body.iter().flat_map(|b| &b.stmts) {
                    match &stmt.node {
                        InstanceStmt::Context(context) => {
                            if let Some(service) = &service {
                                self.test_context(service, context);
                            }
                        }
                        InstanceStmt::Cluster(cluster) => {
                            self.reference(Kind::Cluster, &cluster.segments, cluster.span);
                        }
                        InstanceStmt::Namespace(lit) => {
                            self.c.plain(lit, "an expected Kubernetes namespace");
                        }
                        InstanceStmt::Values(map) => {
                            for entry in &map.entries {
                                if let MapKey::Str(key) = &entry.key {
                                    self.c.plain(key, "a key of expected values");
                                }
                                self.c.expr(&entry.value, &values);
                            }
                        }
                        InstanceStmt::Error => {}
                    }
                }
            }
            Expect::NoInstance(e) => {
                self.test_component(&e.component);
                self.test_claim(&e.claim, claims);
            }
            Expect::Instances(_) => {}
        }
    }

    /// A claim named by an expectation: one of the test's own, or a claim of the policy.
    pub(super) fn test_claim(&mut self, path: &Path, own: &HashMap<SmolStr, Span>) {
        let namespace = self.namespace();
        let index = self.c.scope.index;
        match path.segments.as_slice() {
            [name] => {
                if own.contains_key(&name.text) || index.has(Kind::Claim, &namespace, &name.text) {
                    return;
                }
                let candidates: Vec<&SmolStr> = own.keys().chain(index.names_in(Kind::Claim, &namespace)).collect();
                let help = did_you_mean(&closest(&name.text, candidates.into_iter())).unwrap_or_else(|| {
                    format!(
                        "declare the claim in the test, or name a claim of namespace `{namespace}` (claims of other namespaces are written `ns.name`)"
                    )
                });
                self.c.report(
                    Diagnostic::new(
                        codes::UNRESOLVED_NAME,
                        self.c.file,
                        path.span,
                        format!("no claim named `{}` in this test or in namespace `{namespace}`", name.text),
                    )
                    .with_primary_message("unknown claim")
                    .with_help(help),
                );
            }
            [qualifier, name] if qualifier.text == namespace && own.contains_key(&name.text) => {}
            segments => {
                self.reference(Kind::Claim, segments, path.span);
            }
        }
    }

    /// `SERVICE.COMPONENT` (or `NAMESPACE.SERVICE.COMPONENT`): the service, if it resolves.
    pub(super) fn test_component(&mut self, path: &Path) -> Option<ObjectRef> {
        let (component, service) = path.segments.split_last()?;
        let (Some(first), Some(last)) = (service.first(), service.last()) else {
            self.c.report(
                Diagnostic::new(
                    codes::UNRESOLVED_NAME,
                    self.c.file,
                    path.span,
                    format!("`{}` names no component", component.text),
                )
                .with_primary_message("a service is missing")
                .with_help("name a component with its service: `SERVICE.COMPONENT`".to_string()),
            );
            return None;
        };
        let service = self.reference(Kind::Service, service, first.span.to(last.span))?;
        let index = self.c.scope.index;
        let components = index.components.get(&(service.namespace.clone(), service.name.clone()));
        let components: Vec<&SmolStr> = components.into_iter().flatten().collect();
        let incomplete = index.incomplete.contains(&(service.namespace.clone(), service.name.clone()));
        if !incomplete && !components.contains(&&component.text) {
            let listed: Vec<String> = components.iter().map(|c| format!("`{c}`")).collect();
            let help = did_you_mean(&closest(&component.text, components.iter().copied())).unwrap_or_else(|| {
                if listed.is_empty() {
                    format!("service `{service}` has no components")
                } else {
                    format!("the components of `{service}` are {}", listed.join(", "))
                }
            });
            self.c.report(
                Diagnostic::new(
                    codes::UNRESOLVED_NAME,
                    self.c.file,
                    component.span,
                    format!("service `{service}` has no component `{}`", component.text),
                )
                .with_primary_message("unknown component")
                .with_help(help),
            );
        }
        Some(service)
    }

    /// The context of an expected instance: a context that `use`s the instance's service.
    pub(super) fn test_context(&mut self, service: &ObjectRef, context: &Ident) {
        let index = self.c.scope.index;
        let contexts = index.service_contexts.get(&(service.namespace.clone(), service.name.clone()));
        let contexts: Vec<&SmolStr> = contexts.into_iter().flatten().collect();
        if contexts.contains(&&context.text) {
            return;
        }
        let listed: Vec<String> = contexts.iter().map(|c| format!("`{c}`")).collect();
        let help = did_you_mean(&closest(&context.text, contexts.iter().copied())).unwrap_or_else(|| {
            if listed.is_empty() {
                format!("no context uses service `{service}`, so no claim can get an instance of it")
            } else {
                format!("the contexts that use `{service}` are {}", listed.join(", "))
            }
        });
        self.c.report(
            Diagnostic::new(
                codes::UNRESOLVED_NAME,
                self.c.file,
                context.span,
                format!("no context that uses service `{service}` is named `{}`", context.text),
            )
            .with_primary_message("unknown context")
            .with_help(help),
        );
    }
}
