//! What contexts and rules cover of enum labels: contexts no claim can reach (APT0403), enum
//! values no context matches (APT0404), and rules whose criteria exclude each other (APT0405).

use std::collections::{BTreeMap, BTreeSet};

use crate::diagnostics::{Diagnostic, codes};
use crate::syntax::ast::*;

use super::Walker;
use crate::semantics::expr::constant_string;
use crate::semantics::index::{Kind, ObjectRef};
use crate::semantics::scope::Lookup;
use crate::semantics::types::Ty;

impl Walker<'_, '_> {
    /// Shadowed contexts (APT0403) and enum labels the contexts leave uncovered (APT0404).
    pub(super) fn context_coverage(&mut self, contract: &Contract, contexts: &[&Context]) {
        let mut catch_all: Option<&Context> = None;
        let mut covered: BTreeMap<ObjectRef, Coverage> = BTreeMap::new();
        let mut all_on_one_label = true;
        for context in contexts {
            if let Some(earlier) = catch_all {
                self.c.out.push(
                    Diagnostic::new(codes::UNREACHABLE_CONTEXT, self.c.file, context.name.span, format!("context `{}` can never be chosen", context.name.text))
                        .with_primary_message("unreachable")
                        .with_label(self.c.file, earlier.name.span, "this earlier context always matches")
                        .with_help("contexts are tried in order and the first match wins: move the fallback last, or give it a `when`"),
                );
                continue;
            }
            let exhausted = covered.iter().find(|(_, (variants, set, _))| variants.iter().all(|v| set.contains(v)));
            if let Some((label, (_, _, spans))) = exhausted {
                let mut diagnostic = Diagnostic::new(codes::UNREACHABLE_CONTEXT, self.c.file, context.name.span, format!("context `{}` can never be chosen", context.name.text))
                    .with_primary_message("unreachable")
                    .with_help(format!("the earlier contexts already cover every value of label `{}`; remove this context or narrow the earlier ones", label.name));
                for span in spans {
                    diagnostic = diagnostic.with_label(self.c.file, *span, "covered here");
                }
                self.c.out.push(diagnostic);
                continue;
            }
            match context.criteria.as_ref() {
                None => catch_all = Some(context),
                Some(e) if matches!(strip(e).kind, ExprKind::Bool(true)) => catch_all = Some(context),
                Some(e) => match self.coverage(e) {
                    Some((label, variants, set)) => {
                        let entry = covered.entry(label).or_insert_with(|| (variants, BTreeSet::new(), Vec::new()));
                        entry.1.extend(set);
                        entry.2.push(e.span);
                    }
                    None => all_on_one_label = false,
                },
            }
        }
        if catch_all.is_none() && all_on_one_label && covered.len() == 1 {
            let (label, (variants, set, _)) = covered.iter().next().expect("one entry");
            // The contract may set the label itself before choosing: then coverage is its choice.
            let set_by_contract = contract.body.stmts.iter().any(|stmt| match &stmt.node {
                ContractStmt::LabelOp(LabelOp::Set { label: l, .. } | LabelOp::Remove { label: l }) => {
                    l.text == label.name
                }
                _ => false,
            });
            if set_by_contract {
                return;
            }
            let missing: Vec<String> =
                variants.iter().filter(|v| !set.contains(*v)).map(|v| format!("\"{v}\"")).collect();
            if !missing.is_empty() {
                self.c.out.push(
                    Diagnostic::new(
                        codes::NON_EXHAUSTIVE_CONTRACT,
                        self.c.file,
                        contract.name.span,
                        format!(
                            "no context of contract `{}` matches label `{}` = {}",
                            contract.name.text,
                            label.name,
                            missing.join(", ")
                        ),
                    )
                    .with_primary_message(format!("{} uncovered", missing.join(", ")))
                    .with_help("add a context for those values, or a fallback context without `when` at the end"),
                );
            }
        }
    }

    /// For criteria that only test one enum label (`labels.e == "a"`, `labels.e in [...]`,
    /// `or`s of those): the label, its variants and the values that match.
    pub(super) fn coverage(&self, expr: &Expr) -> Option<(ObjectRef, Vec<SmolStr>, BTreeSet<SmolStr>)> {
        let expr = strip(expr);
        match &expr.kind {
            ExprKind::Binary { op: BinaryOp::Or, lhs, rhs } => {
                let (a, variants, mut left) = self.coverage(lhs)?;
                let (b, _, right) = self.coverage(rhs)?;
                (a == b).then(|| {
                    left.extend(right);
                    (a, variants, left)
                })
            }
            ExprKind::Binary { op, lhs, rhs } => {
                let (label, variants) = self.enum_label(lhs)?;
                let values: BTreeSet<SmolStr> = match (op, &rhs.kind) {
                    (BinaryOp::Eq, _) => {
                        // A value outside the enum is an error of its own (APT0303).
                        let value = SmolStr::new(constant_string(rhs)?);
                        if !variants.contains(&value) {
                            return None;
                        }
                        [value].into()
                    }
                    (BinaryOp::Ne, _) => {
                        let excluded = constant_string(rhs)?;
                        variants.iter().filter(|v| v.as_str() != excluded).cloned().collect()
                    }
                    (BinaryOp::In | BinaryOp::NotIn, ExprKind::List(items)) => {
                        let listed: Option<BTreeSet<SmolStr>> =
                            items.iter().map(|i| constant_string(i).map(SmolStr::new)).collect();
                        let listed = listed?;
                        if *op == BinaryOp::In {
                            listed
                        } else {
                            variants.iter().filter(|v| !listed.contains(*v)).cloned().collect()
                        }
                    }
                    _ => return None,
                };
                Some((label, variants, values))
            }
            _ => None,
        }
    }

    pub(super) fn enum_label(&self, expr: &Expr) -> Option<(ObjectRef, Vec<SmolStr>)> {
        let ExprKind::Path(path) = &strip(expr).kind else { return None };
        let [root, key] = path.segments.as_slice() else { return None };
        if root.text != "labels" {
            return None;
        }
        let Lookup::Found(label, _) = self.c.scope.resolve(Kind::Label, &[key.text.as_str()]) else { return None };
        match &self.c.scope.index.labels.get(&(label.namespace.clone(), label.name.clone()))?.ty {
            Ty::Enum(variants) => Some((label, variants.to_vec())),
            _ => None,
        }
    }

    /// A rule whose criteria require an enum label to take two exclusive values (APT0405).
    pub(super) fn never_matches(&mut self, rule: &Rule, criteria: &Expr) {
        let mut conjuncts = Vec::new();
        flatten_and(criteria, &mut conjuncts);
        let mut allowed: BTreeMap<ObjectRef, BTreeSet<SmolStr>> = BTreeMap::new();
        for conjunct in conjuncts {
            let Some((label, variants, set)) = self.coverage(conjunct) else { continue };
            let entry = allowed.entry(label.clone()).or_insert_with(|| variants.into_iter().collect());
            entry.retain(|v| set.contains(v));
            if entry.is_empty() {
                self.c.out.push(
                    Diagnostic::new(
                        codes::RULE_NEVER_MATCHES,
                        self.c.file,
                        criteria.span,
                        format!("rule `{}` can never match", rule.name.text),
                    )
                    .with_primary_message(format!("no value of label `{}` satisfies all of this", label.name))
                    .with_label(self.c.file, rule.name.span, "this rule never fires")
                    .with_help("the conditions on the label exclude each other; did you mean `or`?"),
                );
                return;
            }
        }
    }
}

/// An enum label's variants, the values earlier contexts cover, and where.
type Coverage = (Vec<SmolStr>, BTreeSet<SmolStr>, Vec<Span>);

fn strip(expr: &Expr) -> &Expr {
    match &expr.kind {
        ExprKind::Paren(inner) => strip(inner),
        _ => expr,
    }
}

fn flatten_and<'e>(expr: &'e Expr, out: &mut Vec<&'e Expr>) {
    match &strip(expr).kind {
        ExprKind::Binary { op: BinaryOp::And, lhs, rhs } => {
            flatten_and(lhs, out);
            flatten_and(rhs, out);
        }
        _ => out.push(strip(expr)),
    }
}
