//! The label abstraction (docs/verification.md): for the expressions a set of contracts can
//! evaluate, which values of each label the policy can tell apart, and which labels it uses in
//! ways the abstraction cannot split into finitely many classes.

use std::collections::{BTreeMap, BTreeSet};

use crate::ir::{Action, BinaryOp, Expr, LabelOp, Program, Rule, Source, Template, TemplatePart, UserField, Value};

/// Where a label's value goes.
#[derive(Clone, Copy)]
enum Pos<'t> {
    /// A bool the policy branches on (criteria, `and`, `not`).
    Decision,
    /// Carried as data (values, discovery, messages, interpolations of those): any value that the
    /// policy's comparisons cannot tell apart gives the same outcome up to renaming.
    Data,
    /// Copied or computed into another label by `set`.
    Into(&'t str),
    /// Anywhere else: the abstraction cannot bound what the value does there.
    Opaque(&'static str),
}

/// What the policy does with each label, over the expressions walked.
#[derive(Default)]
pub(super) struct Uses {
    /// Constants each label is compared with, or is set to (values the policy can tell apart).
    pub pool: BTreeMap<String, BTreeSet<Value>>,
    /// Constants tested for membership in each list label.
    pub elements: BTreeMap<String, BTreeSet<Value>>,
    /// Labels read anywhere.
    pub read: BTreeSet<String>,
    /// Labels read other than as data (compared, branched on, …).
    decided: BTreeSet<String>,
    /// Labels in allocation keys: their values decide which instances a claim shares with the
    /// policy's claims, so the values those hold stay classes of their own.
    keyed: BTreeSet<String>,
    /// Labels the abstraction cannot split, with why.
    pub opaque: BTreeMap<String, String>,
    /// `set labels.Y = …labels.X…`: (X, Y, whether a plain copy).
    flows: Vec<(String, String, bool)>,
    contracts: BTreeSet<String>,
    namespaces: BTreeSet<String>,
    /// Whether a walked expression reads more than labels and the user (the claim, the cluster,
    /// an instance, values, discovery): the lints, which vary only those, then say nothing.
    pub beyond: bool,
    /// What of the user the walked expressions read (`name`, `team`, `groups`, `labels.X`): two
    /// consumers alike in those are alike for them (the lints judge one of each kind).
    pub user: BTreeSet<String>,
}

impl Uses {
    /// Every expression resolving `contract` can evaluate: its contexts, services, the contracts
    /// its `uses` reach, and the rules of their namespaces and `system`.
    pub fn contract(&mut self, program: &Program, contract: &str) {
        if !self.contracts.insert(contract.to_string()) {
            return;
        }
        let Some(c) = program.contracts.get(contract) else { return };
        self.rules(program, &c.namespace.clone());
        self.rules(program, crate::ir::SYSTEM_NAMESPACE);
        for op in &c.ops {
            self.op(op);
        }
        for context in &c.contexts {
            if let Some(criteria) = &context.criteria {
                self.expr(criteria, Pos::Decision);
            }
            for op in &context.ops {
                self.op(op);
            }
            for key in &context.allocate {
                self.allocation(key);
            }
            let Some(service) = program.services.get(&context.service) else { continue };
            for component in &service.components {
                if let Some(criteria) = &component.criteria {
                    self.expr(criteria, Pos::Decision);
                }
                for (key, value) in &component.values {
                    self.template(key, Pos::Opaque("in the key of a `values` entry"));
                    self.expr(value, Pos::Data);
                }
                for (_, value) in &component.discovery {
                    self.expr(value, Pos::Data);
                }
                match &component.source {
                    Source::Uses { contract } => self.contract(program, contract),
                    Source::Manifests { templates, .. } => {
                        for t in templates {
                            self.template(&t.template, Pos::Opaque("rendered into a manifest"));
                        }
                    }
                    Source::Chart { .. } => {}
                }
            }
        }
    }

    fn rules(&mut self, program: &Program, namespace: &str) {
        if !self.namespaces.insert(namespace.to_string()) {
            return;
        }
        for rule in program.rules.get(namespace).into_iter().flatten() {
            self.rule(rule);
            for action in &rule.actions {
                match action {
                    Action::Reject { message } => self.template(message, Pos::Data),
                    Action::Place { namespace: Some(ns), .. } => self.namespace(ns),
                    Action::Label(_) | Action::Place { namespace: None, .. } => {}
                }
            }
        }
    }

    /// What deciding a rule evaluates, as far as later rules can tell (the lints): its criteria
    /// and its label operations. Not its `reject` message nor its `place … namespace`: whether
    /// they evaluate or fail, the claim goes on (a placement) or stops (a rejection) the same.
    pub fn rule(&mut self, rule: &Rule) {
        if let Some(criteria) = &rule.criteria {
            self.expr(criteria, Pos::Decision);
        }
        for action in &rule.actions {
            if let Action::Label(op) = action {
                self.op(op);
            }
        }
    }

    /// The Kubernetes namespace of a `place`: which values give a valid name is not something
    /// the classes split, so only labels of finite types can be enumerated there.
    pub fn namespace(&mut self, expr: &Expr) {
        self.expr(expr, Pos::Opaque("in a Kubernetes namespace name, which must be valid"))
    }

    /// What choosing a context of `contract` evaluates: the contract's label operations and its
    /// contexts' criteria (the lints).
    pub fn contexts(&mut self, contract: &crate::ir::Contract) {
        for op in &contract.ops {
            self.op(op);
        }
        for context in &contract.contexts {
            if let Some(criteria) = &context.criteria {
                self.expr(criteria, Pos::Decision);
            }
        }
    }

    /// An assertion's own expressions (`when`, `expect that`), or a rule's criteria.
    pub fn decision(&mut self, expr: &Expr) {
        self.expr(expr, Pos::Decision);
    }

    fn op(&mut self, op: &LabelOp) {
        if let LabelOp::Set { label, value } = op {
            // A constant set is a value later comparisons may meet.
            if let Expr::Const(v) = value {
                self.pool.entry(label.clone()).or_default().insert(v.clone());
            }
            self.expr(value, Pos::Into(label));
        }
    }

    /// An allocation key: a label, or one label interpolated in text, keeps keys of different
    /// values different; anything else could make two values one key.
    fn allocation(&mut self, key: &Expr) {
        match key {
            Expr::Label(id) => {
                self.keyed.insert(id.clone());
                self.label(id, Pos::Data)
            }
            Expr::Template(t)
                if t.parts.iter().all(|p| matches!(p, TemplatePart::Text(_) | TemplatePart::Expr(Expr::Label(_))))
                    && t.parts.iter().filter(|p| matches!(p, TemplatePart::Expr(_))).count() <= 1 =>
            {
                for part in &t.parts {
                    if let TemplatePart::Expr(Expr::Label(id)) = part {
                        self.keyed.insert(id.clone());
                    }
                }
                self.template(t, Pos::Data)
            }
            // Two values could give one key (`lower`, two labels in one text): the key's classes
            // are not the label's.
            other => self.expr(other, Pos::Opaque("in an allocation key computed from it")),
        }
    }

    fn template(&mut self, template: &Template, pos: Pos<'_>) {
        for part in &template.parts {
            if let TemplatePart::Expr(e) = part {
                self.expr(e, pos);
            }
        }
    }

    fn label(&mut self, id: &str, pos: Pos<'_>) {
        self.read.insert(id.to_string());
        match pos {
            Pos::Data => {}
            Pos::Decision => {
                self.decided.insert(id.to_string());
            }
            Pos::Into(target) => self.flows.push((id.to_string(), target.to_string(), true)),
            Pos::Opaque(why) => {
                self.decided.insert(id.to_string());
                self.opaque.entry(id.to_string()).or_insert_with(|| why.to_string());
            }
        }
    }

    fn expr(&mut self, expr: &Expr, pos: Pos<'_>) {
        match expr {
            Expr::Label(id) => self.label(id, pos),
            Expr::Const(_) => {}
            Expr::User(field) => {
                self.user.insert(match field {
                    UserField::Name => "name".to_string(),
                    UserField::Team => "team".to_string(),
                    UserField::Groups => "groups".to_string(),
                    UserField::Label(id) => format!("labels.{id}"),
                });
            }
            Expr::Claim(_) | Expr::Cluster(_) | Expr::Instance(_) | Expr::Value(_) | Expr::Discovery { .. } => {
                self.beyond = true
            }
            Expr::Template(t) => {
                let p = match pos {
                    Pos::Data => Pos::Data,
                    Pos::Into(t) => Pos::Into(t),
                    _ => Pos::Opaque("interpolated into a string the policy compares"),
                };
                for part in &t.parts {
                    if let TemplatePart::Expr(e) = part {
                        self.derived(e, p);
                    }
                }
            }
            Expr::List(items) => {
                let p = match pos {
                    Pos::Data | Pos::Into(_) => pos,
                    _ => Pos::Opaque("in a list the policy compares"),
                };
                for item in items {
                    self.derived(item, p);
                }
            }
            Expr::Map(entries) => {
                for (key, value) in entries {
                    self.template(key, Pos::Opaque("in a map key"));
                    let p = match pos {
                        Pos::Data | Pos::Into(_) => pos,
                        _ => Pos::Opaque("in a map the policy compares"),
                    };
                    self.derived(value, p);
                }
            }
            Expr::Call { function, args } => {
                let p = match (function.as_str(), pos) {
                    ("to_int" | "truncate" | "secret_env" | "secret_file" | "secret_k8s", _) => {
                        Pos::Opaque("passed to a function that can fail on some values")
                    }
                    (_, Pos::Data) => Pos::Data,
                    (_, Pos::Into(t)) => Pos::Into(t),
                    _ => Pos::Opaque("passed to a function whose result the policy compares"),
                };
                for arg in args {
                    self.derived(arg, p);
                }
            }
            Expr::Not(e) => self.expr(e, Pos::Decision),
            Expr::Neg(e) => self.derived(e, Pos::Opaque("negated (which can overflow)")),
            Expr::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs),
        }
    }

    /// A label read inside a computed value: a copy no more.
    fn derived(&mut self, expr: &Expr, pos: Pos<'_>) {
        match (expr, pos) {
            (Expr::Label(id), Pos::Into(target)) => {
                self.read.insert(id.clone());
                self.flows.push((id.clone(), target.to_string(), false));
            }
            _ => self.expr(expr, pos),
        }
    }

    fn binary(&mut self, op: BinaryOp, lhs: &Expr, rhs: &Expr) {
        match op {
            BinaryOp::And | BinaryOp::Or => {
                self.expr(lhs, Pos::Decision);
                self.expr(rhs, Pos::Decision);
            }
            BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                match (labelish(lhs), labelish(rhs)) {
                    // Strings between two constants in code-point order have no representative.
                    (Some((id, _)), _) | (_, Some((id, _)))
                        if !matches!(op, BinaryOp::Eq | BinaryOp::Ne)
                            && [lhs, rhs].iter().any(|e| matches!(e, Expr::Const(Value::Str(_)))) =>
                    {
                        self.label(&id, Pos::Opaque("ordered against a string"))
                    }
                    (Some((id, fallback)), None) if self.constants(rhs).is_some() => {
                        self.compared(&id, fallback, self.constants(rhs).unwrap_or_default())
                    }
                    (None, Some((id, fallback))) if self.constants(lhs).is_some() => {
                        self.compared(&id, fallback, self.constants(lhs).unwrap_or_default())
                    }
                    _ => {
                        self.expr(lhs, Pos::Opaque("compared with a computed value"));
                        self.expr(rhs, Pos::Opaque("compared with a computed value"));
                    }
                }
            }
            BinaryOp::In | BinaryOp::NotIn => match (labelish(lhs), rhs) {
                (Some((id, fallback)), Expr::Const(Value::List(items))) => {
                    self.compared(&id, fallback, items.clone());
                }
                _ => match (lhs, rhs) {
                    (Expr::Const(v), Expr::Label(id)) => {
                        self.read.insert(id.clone());
                        self.decided.insert(id.clone());
                        self.elements.entry(id.clone()).or_default().insert(v.clone());
                    }
                    _ => {
                        self.expr(lhs, Pos::Opaque("tested for membership in a computed list"));
                        self.expr(rhs, Pos::Opaque("a list tested for a computed member"));
                    }
                },
            },
            BinaryOp::Matches => {
                self.expr(lhs, Pos::Opaque("matched against a regular expression"));
                self.expr(rhs, Pos::Opaque("used as a regular expression"));
            }
        }
    }

    fn compared(&mut self, id: &str, fallback: Option<Value>, constants: Vec<Value>) {
        self.read.insert(id.to_string());
        self.decided.insert(id.to_string());
        let pool = self.pool.entry(id.to_string()).or_default();
        pool.extend(constants);
        pool.extend(fallback);
    }

    /// The values a side of a comparison may have, when they are finitely many and known:
    /// a constant.
    fn constants(&self, expr: &Expr) -> Option<Vec<Value>> {
        match expr {
            Expr::Const(v) => Some(vec![v.clone()]),
            // `-1` is lowered as the negation of `1`.
            Expr::Neg(inner) => match inner.as_ref() {
                Expr::Const(Value::Int(n)) => Some(vec![Value::Int(n.checked_neg()?)]),
                _ => None,
            },
            _ => None,
        }
    }

    /// Adds what another walk found (of the same contract in another version of the policy), so
    /// the classes tell apart every value either version can: `aptc diff --all-claims`. Both
    /// walks are settled.
    pub fn merge(&mut self, other: &Uses) {
        for (label, values) in &other.pool {
            self.pool.entry(label.clone()).or_default().extend(values.iter().cloned());
        }
        for (label, values) in &other.elements {
            self.elements.entry(label.clone()).or_default().extend(values.iter().cloned());
        }
        self.read.extend(other.read.iter().cloned());
        self.user.extend(other.user.iter().cloned());
        self.decided.extend(other.decided.iter().cloned());
        self.keyed.extend(other.keyed.iter().cloned());
        for (label, why) in &other.opaque {
            self.opaque.entry(label.clone()).or_insert_with(|| why.clone());
        }
    }

    /// After the walk: a label computed from another carries its source's classes only when the
    /// target is itself never decided on; a copy shares the target's constants. Runs to a fixpoint.
    pub fn settle(&mut self) {
        loop {
            let mut changed = false;
            for (from, to, copy) in self.flows.clone() {
                let to_decided = self.decided.contains(&to) || self.opaque.contains_key(&to);
                // A label copied or computed into a key: its values decide the key too.
                if self.keyed.contains(&to) && self.keyed.insert(from.clone()) {
                    changed = true;
                }
                if copy {
                    if let Some(why) = self.opaque.get(&to).cloned()
                        && !self.opaque.contains_key(&from)
                    {
                        self.opaque.insert(from.clone(), format!("copied into label `{to}`, which is {why}"));
                        changed = true;
                    }
                    let theirs = self.pool.get(&to).cloned().unwrap_or_default();
                    let mine = self.pool.entry(from.clone()).or_default();
                    let before = mine.len();
                    mine.extend(theirs);
                    changed |= mine.len() != before;
                    if to_decided && self.decided.insert(from.clone()) {
                        changed = true;
                    }
                } else if to_decided && !self.opaque.contains_key(&from) {
                    self.opaque
                        .insert(from.clone(), format!("computed into label `{to}`, which the policy then compares"));
                    self.decided.insert(from.clone());
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }
}

/// `labels.X` or `default(labels.X, CONSTANT)`, with the fallback.
fn labelish(expr: &Expr) -> Option<(String, Option<Value>)> {
    match expr {
        Expr::Label(id) => Some((id.clone(), None)),
        Expr::Call { function, args } if function == "default" => match args.as_slice() {
            [Expr::Label(id), Expr::Const(fallback)] => Some((id.clone(), Some(fallback.clone()))),
            _ => None,
        },
        _ => None,
    }
}

/// The values of an enum type as the IR writes it (`"dev" | "prod"`, each quoted as Rust's
/// `{:?}` does), or `None` for other types.
pub(super) fn enum_values(ty: &str) -> Option<Vec<String>> {
    let mut values = Vec::new();
    let mut chars = ty.trim().chars().peekable();
    if chars.peek() != Some(&'"') {
        return None;
    }
    loop {
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    't' => value.push('\t'),
                    'r' => value.push('\r'),
                    '0' => value.push('\0'),
                    'u' => {
                        if chars.next()? != '{' {
                            return None;
                        }
                        let hex: String = chars.by_ref().take_while(|c| *c != '}').collect();
                        value.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        values.push(value);
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        match chars.next() {
            None => return Some(values),
            Some('|') => {
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            Some(_) => return None,
        }
    }
}

/// The representatives of a label's classes (docs/verification.md §2): `None` stands for "not set
/// by the claim". `extra` are values the claims and consumers of the policy give it.
pub(super) fn representatives(
    ty: &str,
    default: Option<&Value>,
    uses: &Uses,
    id: &str,
    extra: &BTreeSet<Value>,
) -> Vec<Option<Value>> {
    let mut out: Vec<Option<Value>> = Vec::new();
    if default.is_none() {
        out.push(None);
    }
    let mut pool: BTreeSet<Value> = uses.pool.get(id).cloned().unwrap_or_default();
    pool.extend(extra.iter().cloned());
    let decided = uses.decided.contains(id);
    // Only carried as data (no comparison, membership test or allocation key reads it): every
    // value gives the same outcome up to renaming, so one class, besides "not set" when that
    // differs (docs/verification.md §2).
    let data_only = !decided && !uses.keyed.contains(id) && uses.elements.get(id).is_none_or(BTreeSet::is_empty);
    if data_only && !finite(ty) {
        let value = match ty {
            "int" => Value::Int(0),
            _ if ty.starts_with('[') => Value::List(Vec::new()),
            _ => Value::Str(fresh(&BTreeSet::new())),
        };
        return match default {
            Some(_) => vec![None],
            None => vec![None, Some(value)],
        };
    }
    match ty {
        "bool" => out.extend([Some(Value::Bool(false)), Some(Value::Bool(true))]),
        "int" => {
            let mut ints: BTreeSet<i64> = BTreeSet::new();
            for v in &pool {
                if let Value::Int(n) = v {
                    ints.insert(*n);
                    if decided {
                        ints.extend(n.checked_sub(1));
                        ints.extend(n.checked_add(1));
                    }
                }
            }
            if ints.is_empty() {
                ints.insert(0);
            }
            out.extend(ints.into_iter().map(|n| Some(Value::Int(n))));
        }
        "string" | "any" => {
            let mut strings: BTreeSet<Value> =
                pool.into_iter().filter(|v| ty == "any" || matches!(v, Value::Str(_))).collect();
            if decided {
                strings.insert(Value::Str(String::new()));
            }
            strings.insert(Value::Str(fresh(&strings)));
            out.extend(strings.into_iter().map(Some));
        }
        _ if ty.starts_with('[') => {
            // Subsets of the members tested, and one member no test names; constant lists given.
            let mut members: Vec<Value> = uses.elements.get(id).cloned().unwrap_or_default().into_iter().collect();
            let element_ty = ty.trim_start_matches('[').trim_end_matches(']');
            if element_ty == "string" {
                let taken: BTreeSet<Value> = members.iter().cloned().collect();
                members.push(Value::Str(fresh(&taken)));
            }
            let mut lists: BTreeSet<Value> = pool.into_iter().filter(|v| matches!(v, Value::List(_))).collect();
            if members.len() <= 6 {
                for mask in 0u32..(1 << members.len()) {
                    let list = members
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, v)| v.clone())
                        .collect();
                    lists.insert(Value::List(list));
                }
            }
            out.extend(lists.into_iter().map(Some));
        }
        _ => match enum_values(ty) {
            Some(values) => out.extend(values.into_iter().map(|v| Some(Value::Str(v)))),
            None => out.extend(pool.into_iter().map(Some)),
        },
    }
    // Not setting a label with a default is setting it to its default: that class comes first,
    // as "not set", so counterexamples set only what matters.
    if let Some(default) = default {
        out.retain(|v| v.as_ref() != Some(default));
        out.insert(0, None);
    }
    out
}

/// A string none of `taken` is: "other", else "other-1", ….
fn fresh(taken: &BTreeSet<Value>) -> String {
    let mut candidate = "other".to_string();
    let mut n = 0;
    while taken.contains(&Value::Str(candidate.clone())) {
        n += 1;
        candidate = format!("other-{n}");
    }
    candidate
}

/// Whether the type's values are finitely many and all enumerated (so no use is opaque).
pub(super) fn finite(ty: &str) -> bool {
    ty == "bool" || enum_values(ty).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enum_types_parse_back() {
        assert_eq!(enum_values(r#""dev" | "prod""#), Some(vec!["dev".into(), "prod".into()]));
        assert_eq!(enum_values(r#""a\" | \"b" | "c""#), Some(vec!["a\" | \"b".into(), "c".into()]));
        assert_eq!(enum_values("string"), None);
        assert_eq!(enum_values(r#""x" y"#), None);
    }

    #[test]
    fn int_comparisons_give_their_boundaries() {
        let mut uses = Uses::default();
        uses.decision(&Expr::Binary {
            op: BinaryOp::Ge,
            lhs: Box::new(Expr::Label("s.n".into())),
            rhs: Box::new(Expr::Const(Value::Int(3))),
        });
        let reps = representatives("int", None, &uses, "s.n", &BTreeSet::new());
        assert_eq!(reps, vec![None, Some(Value::Int(2)), Some(Value::Int(3)), Some(Value::Int(4))]);
    }

    #[test]
    fn a_function_before_a_comparison_is_opaque() {
        let mut uses = Uses::default();
        uses.decision(&Expr::Binary {
            op: BinaryOp::Eq,
            lhs: Box::new(Expr::Call { function: "lower".into(), args: vec![Expr::Label("s.t".into())] }),
            rhs: Box::new(Expr::Const(Value::Str("web".into()))),
        });
        uses.settle();
        assert!(uses.opaque.contains_key("s.t"));
    }
}
