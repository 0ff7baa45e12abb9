//! Evaluation of IR expressions for one consumer at one point of resolution.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::ir::SECRET_KEY;
use crate::ir::{
    BinaryOp, ClaimField, ClusterField, Expr, InstanceField, Program, Template, TemplatePart, UserField, Value,
};
use thiserror::Error;

use crate::manifest::{Piece, Skeleton, TemplateError};
use crate::secret::SecretRef;

/// Why an expression has no value.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum EvalError {
    #[error("{0} is not set (it has no default)")]
    Unset(String),
    #[error("`cluster` is read before any rule placed the contract")]
    NotPlaced,
    #[error("{0}")]
    Function(String),
    #[error("integer overflow")]
    Overflow,
    #[error("invalid regular expression {pattern:?}: {reason}")]
    Regex { pattern: String, reason: String },
    #[error("{0}")]
    Type(String),
    #[error(transparent)]
    Manifest(#[from] TemplateError),
}

/// A consumer as expressions see it (`user.*`).
#[derive(Clone, Debug, Default)]
pub struct Subject {
    pub name: String,
    pub team: Option<String>,
    pub groups: Vec<String>,
    pub labels: BTreeMap<String, Value>,
}

/// Where the contract's instances go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// `system.name`.
    pub cluster: String,
    pub namespace: String,
}

/// Everything an expression may read.
#[derive(Clone, Copy)]
pub struct Env<'a> {
    pub program: &'a Program,
    pub labels: &'a BTreeMap<String, Value>,
    pub user: &'a Subject,
    /// (name, namespace, id) of the claim.
    pub claim: (&'a str, &'a str, &'a str),
    pub placement: Option<&'a Placement>,
    pub instance: Option<(&'a str, &'a str)>,
    /// Component → its discovery values, for `C.discovery.KEY`.
    pub discovery: Option<&'a BTreeMap<String, BTreeMap<String, Value>>>,
    /// The component's evaluated `values`, for `values.KEY` in its manifest templates.
    pub values: Option<&'a [(String, Value)]>,
    /// Told what this evaluation reads of the labels (`core::verify`'s path conditions); `None`
    /// everywhere else.
    pub observer: Option<&'a dyn Observer>,
}

/// What an evaluation learns about the claim's labels, in the order it learns it: the path
/// condition the verification engine generalises a resolution by (docs/verification.md §3).
pub trait Observer: Sync {
    /// `labels.LABEL` read as a value (copied, interpolated, compared with something computed…):
    /// anything may depend on it. `value` is what the labels hold for it then (`None`: not set),
    /// so the observer can tell the claim's own value from one resolution set.
    fn read(&self, label: &str, value: Option<&Value>);
    /// An atomic test of `labels.LABEL` (or `default(labels.LABEL, C)`) against constants,
    /// `op(lhs, rhs)`, on the labels' `value` for it, and what it gave: nothing else of the label
    /// was read to decide it.
    fn test(&self, label: &str, value: Option<&Value>, test: Atomic<'_>, result: &Result<bool, EvalError>);
    /// `user.FIELD` read: what the evaluation gives may depend on the consumer's field (the
    /// resolver's memo of claims keys a resolution by the consumer's fields it read).
    fn user(&self, _field: &UserField) {}
    /// `claim.FIELD` read, as [`Observer::user`].
    fn claim(&self, _field: ClaimField) {}
}

/// An atomic test as the evaluator met it, so that an observer can ask it again of other values
/// ([`Atomic::on`]).
#[derive(Clone, Copy)]
pub struct Atomic<'e> {
    /// The comparison (`==` … `>=`, `in`, `not in`).
    pub op: BinaryOp,
    /// Its sides as written: one reads the label, the other is a constant.
    pub lhs: &'e Expr,
    pub rhs: &'e Expr,
}

impl Atomic<'_> {
    /// The test's result for a claim whose label `label` is `value` (`None`: not set), with the
    /// evaluator's own semantics (defaults, `default`, errors).
    pub fn on(&self, program: &Program, user: &Subject, label: &str, value: Option<&Value>) -> Result<bool, EvalError> {
        let mut labels = BTreeMap::new();
        if let Some(value) = value {
            labels.insert(label.to_string(), value.clone());
        }
        Env::of_labels(program, &labels, user).comparison(self.op, self.lhs, self.rhs)
    }
}

/// The label an atomic test reads, when `op(lhs, rhs)` is one: `labels.X` or
/// `default(labels.X, CONSTANT)` compared with a constant, or a constant tested for membership in
/// `labels.X` (the forms `verify::domains` splits classes by).
fn atomic_label<'e>(op: BinaryOp, lhs: &'e Expr, rhs: &'e Expr) -> Option<&'e str> {
    fn labelish(expr: &Expr) -> Option<&str> {
        match expr {
            Expr::Label(id) => Some(id),
            Expr::Call { function, args } if function == "default" => match args.as_slice() {
                [Expr::Label(id), Expr::Const(_)] => Some(id),
                _ => None,
            },
            _ => None,
        }
    }
    fn constant(expr: &Expr) -> bool {
        match expr {
            Expr::Const(_) => true,
            Expr::Neg(inner) => matches!(inner.as_ref(), Expr::Const(Value::Int(_))),
            _ => false,
        }
    }
    match op {
        BinaryOp::Eq | BinaryOp::Ne | BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
            match (labelish(lhs), labelish(rhs)) {
                (Some(id), None) if constant(rhs) => Some(id),
                (None, Some(id)) if constant(lhs) => Some(id),
                _ => None,
            }
        }
        BinaryOp::In | BinaryOp::NotIn => match (lhs, rhs) {
            (_, Expr::Const(Value::List(_))) => labelish(lhs),
            (Expr::Const(_), Expr::Label(id)) => Some(id),
            _ => None,
        },
        BinaryOp::And | BinaryOp::Or | BinaryOp::Matches => None,
    }
}

impl<'a> Env<'a> {
    /// What criteria read before a claim has a name or a place: the labels and the user (access
    /// rules, the verification engine's candidates).
    pub fn of_labels(program: &'a Program, labels: &'a BTreeMap<String, Value>, user: &'a Subject) -> Env<'a> {
        Env {
            program,
            labels,
            user,
            claim: ("", "", ""),
            placement: None,
            instance: None,
            discovery: None,
            values: None,
            observer: None,
        }
    }
}

impl<'a> Env<'a> {
    /// The value of a label: set, else its default, else unset.
    pub fn label(&self, id: &str) -> Result<Value, EvalError> {
        self.label_ref(id).cloned()
    }

    /// [`Env::label`] borrowed: the labels are looked up once, for the observer and the value.
    fn label_ref(&self, id: &str) -> Result<&'a Value, EvalError> {
        let held = self.labels.get(id);
        if let Some(observer) = self.observer {
            observer.read(id, held);
        }
        self.held_or_default(id, held)
    }

    /// What label `id` reads as when the labels hold `held` for it.
    fn held_or_default(&self, id: &str, held: Option<&'a Value>) -> Result<&'a Value, EvalError> {
        held.or_else(|| self.default_of(id)).ok_or_else(|| EvalError::Unset(format!("label `{id}`")))
    }

    /// The declared default of label `id`, if it has one.
    fn default_of(&self, id: &str) -> Option<&'a Value> {
        self.program.labels.get(id).and_then(|decl| decl.default.as_ref())
    }

    /// A label value some object holds, or else the label's declared default.
    fn or_default(&self, held: Option<&Value>, id: &str, what: &str) -> Result<Value, EvalError> {
        match held {
            Some(value) => Ok(value.clone()),
            None => self.default_of(id).cloned().ok_or_else(|| EvalError::Unset(format!("`{what}` `{id}`"))),
        }
    }

    /// `C.discovery.KEY` of a component evaluated before.
    fn discovery_ref(&self, component: &str, key: &str) -> Result<&'a Value, EvalError> {
        self.discovery.and_then(|d| d.get(component)).and_then(|values| values.get(key)).ok_or_else(|| {
            EvalError::Unset(format!("`{component}.discovery.{key}` (was `{component}` skipped by its `when`?)"))
        })
    }

    /// `values.KEY` of the component's evaluated values.
    fn value_ref(&self, key: &str) -> Result<&'a Value, EvalError> {
        self.values
            .and_then(|values| values.iter().find(|(k, _)| k == key))
            .map(|(_, value)| value)
            .ok_or_else(|| EvalError::Unset(format!("`values.{key}`")))
    }

    /// `claim.FIELD`, told to the observer.
    fn claim_field(&self, field: ClaimField) -> &'a str {
        if let Some(observer) = self.observer {
            observer.claim(field);
        }
        match field {
            ClaimField::Name => self.claim.0,
            ClaimField::Namespace => self.claim.1,
            ClaimField::Id => self.claim.2,
        }
    }

    /// `instance.FIELD`, in a component only.
    fn instance_field(&self, field: InstanceField) -> Result<&'a str, EvalError> {
        let (name, id) = self.instance.ok_or_else(|| EvalError::Type("`instance` outside a component".into()))?;
        Ok(match field {
            InstanceField::Name => name,
            InstanceField::Id => id,
        })
    }

    /// An expression's value, borrowed where the expression names one that is already there (a
    /// constant, a label, a discovery value, a component value) and computed otherwise: what is
    /// only compared or written out is not copied first. Reads and errors as [`Env::eval`].
    fn value<'x>(&self, expr: &'x Expr) -> Result<Cow<'x, Value>, EvalError>
    where
        'a: 'x,
    {
        Ok(match expr {
            Expr::Const(value) => Cow::Borrowed(value),
            Expr::Label(id) => Cow::Borrowed(self.label_ref(id)?),
            Expr::Discovery { component, key } => Cow::Borrowed(self.discovery_ref(component, key)?),
            Expr::Value(key) => Cow::Borrowed(self.value_ref(key)?),
            _ => Cow::Owned(self.eval(expr)?),
        })
    }

    /// `user.FIELD` of the consumer.
    fn user_field(&self, field: &UserField) -> Result<Value, EvalError> {
        Ok(match field {
            UserField::Name => Value::Str(self.user.name.clone()),
            UserField::Team => {
                Value::Str(self.user.team.clone().ok_or_else(|| EvalError::Unset("`user.team`".into()))?)
            }
            UserField::Groups => Value::List(self.user.groups.iter().cloned().map(Value::Str).collect()),
            // A consumer without the label reads its default, as for `labels`.
            UserField::Label(id) => self.or_default(self.user.labels.get(id), id, "user.labels")?,
        })
    }

    pub fn eval(&self, expr: &Expr) -> Result<Value, EvalError> {
        Ok(match expr {
            Expr::Const(value) => value.clone(),
            Expr::Template(template) => Value::Str(self.render(template)?),
            Expr::List(items) => Value::List(items.iter().map(|e| self.eval(e)).collect::<Result<_, _>>()?),
            Expr::Map(entries) => {
                let mut out: Vec<(String, Value)> = Vec::with_capacity(entries.len());
                for (key, value) in entries {
                    let key = self.render(key)?;
                    // Only the `secret_*` functions make markers (a key computed at run time
                    // could otherwise forge one, and have a deploy read any variable or file).
                    if key == SECRET_KEY {
                        return Err(EvalError::Type(format!("the map key `{key}` is reserved for secrets")));
                    }
                    if out.iter().any(|(k, _)| *k == key) {
                        return Err(EvalError::Type(format!("two entries of one map have the key `{key}`")));
                    }
                    out.push((key, self.eval(value)?));
                }
                Value::Map(out)
            }
            Expr::Label(id) => self.label_ref(id)?.clone(),
            Expr::User(field) => {
                if let Some(observer) = self.observer {
                    observer.user(field);
                }
                self.user_field(field)?
            }
            Expr::Claim(field) => Value::Str(self.claim_field(*field).to_string()),
            Expr::Cluster(field) => {
                let placement = self.placement.ok_or(EvalError::NotPlaced)?;
                let cluster = self.program.clusters.get(&placement.cluster);
                match field {
                    ClusterField::Name => {
                        Value::Str(cluster.map_or_else(|| placement.cluster.clone(), |c| c.name.clone()))
                    }
                    ClusterField::Namespace => Value::Str(placement.namespace.clone()),
                    ClusterField::Label(id) => {
                        self.or_default(cluster.and_then(|c| c.labels.get(id)), id, "cluster.labels")?
                    }
                }
            }
            Expr::Instance(field) => Value::Str(self.instance_field(*field)?.to_string()),
            Expr::Discovery { component, key } => self.discovery_ref(component, key)?.clone(),
            Expr::Value(key) => self.value_ref(key)?.clone(),
            Expr::Call { function, args } => self.call(function, args)?,
            Expr::Not(inner) => Value::Bool(!self.bool(inner)?),
            Expr::Neg(inner) => match self.eval(inner)? {
                Value::Int(n) => Value::Int(n.checked_neg().ok_or(EvalError::Overflow)?),
                other => return Err(EvalError::Type(format!("`-` of {}", other.literal()))),
            },
            Expr::Binary { op, lhs, rhs } => Value::Bool(self.binary(*op, lhs, rhs)?),
        })
    }

    /// Evaluates a condition. A test or a negation is decided without a [`Value`] made of it, a
    /// label or a constant without a copy of it.
    pub fn bool(&self, expr: &Expr) -> Result<bool, EvalError> {
        match expr {
            Expr::Binary { op, lhs, rhs } => self.binary(*op, lhs, rhs),
            Expr::Not(inner) => Ok(!self.bool(inner)?),
            _ => match self.value(expr)?.as_ref() {
                Value::Bool(b) => Ok(*b),
                other => Err(EvalError::Type(format!("a condition evaluated to {}", other.literal()))),
            },
        }
    }

    /// Renders a template to its string. Each interpolation is written into it as it is, without
    /// a copy or a string of its own first (a label, `instance.name`, `claim.*`).
    pub fn render(&self, template: &Template) -> Result<String, EvalError> {
        // Room for the text and a short value per interpolation: most templates then allocate
        // once (`"pg://${instance.name}:5432"`, `"${labels.team}-db"`); one that is a single
        // interpolation starts empty and takes the value's exact size.
        let capacity = template
            .parts
            .iter()
            .map(|part| match part {
                TemplatePart::Text(text) => text.len(),
                TemplatePart::Expr(_) if template.parts.len() > 1 => 24,
                TemplatePart::Expr(_) => 0,
            })
            .sum();
        let mut out = String::with_capacity(capacity);
        for part in &template.parts {
            match part {
                TemplatePart::Text(text) => out.push_str(text),
                TemplatePart::Expr(expr) => self.interpolate(expr, &mut out)?,
            }
        }
        Ok(out)
    }

    /// Appends `expr`'s text as interpolation writes it ([`Value`]'s `Display`) to `out`.
    fn interpolate(&self, expr: &Expr, out: &mut String) -> Result<(), EvalError> {
        match expr {
            Expr::Claim(field) => out.push_str(self.claim_field(*field)),
            Expr::Instance(field) => out.push_str(self.instance_field(*field)?),
            _ => match self.value(expr)? {
                Cow::Owned(Value::Str(text)) if out.is_empty() => *out = text,
                value => match value.as_ref() {
                    Value::Str(text) => out.push_str(text),
                    other => out.push_str(&other.to_string()),
                },
            },
        }
        Ok(())
    }

    /// Renders a manifest template (docs/language.md §5.2) structurally: the template is parsed
    /// as YAML with placeholders, and each value is put into its node ([`Skeleton`]), so no value
    /// can change the structure of a manifest. A secret stands as its placeholder (a string) for
    /// the driver to reveal inside the parsed object.
    pub fn render_manifest(&self, template: &Template) -> Result<String, EvalError> {
        let pieces: Vec<Piece> = template
            .parts
            .iter()
            .map(|part| match part {
                TemplatePart::Text(text) => Piece::Text(text),
                TemplatePart::Expr(_) => Piece::Hole,
            })
            .collect();
        let holes: Vec<&Expr> = template
            .parts
            .iter()
            .filter_map(|part| match part {
                TemplatePart::Expr(expr) => Some(expr),
                TemplatePart::Text(_) => None,
            })
            .collect();
        Skeleton::parse(&pieces)?.render(|i| {
            let expr = holes.get(i).ok_or_else(|| EvalError::Type(format!("no interpolation {i}")))?;
            let value = self.eval(expr)?;
            Ok(match SecretRef::from_json(&value.to_json()) {
                Some(secret) => serde_json::Value::String(crate::secret::placeholder(&secret)),
                None => value.to_json(),
            })
        })
    }

    fn binary(&self, op: BinaryOp, lhs: &Expr, rhs: &Expr) -> Result<bool, EvalError> {
        match op {
            BinaryOp::And => return Ok(self.bool(lhs)? && self.bool(rhs)?),
            BinaryOp::Or => return Ok(self.bool(lhs)? || self.bool(rhs)?),
            _ => {}
        }
        // An atomic test on a label is told as one, its label read unobserved: the observer
        // learns the test's result, not the value.
        if let Some(observer) = self.observer
            && let Some(label) = atomic_label(op, lhs, rhs)
        {
            let held = self.labels.get(label);
            let result = self.atomic_test(op, lhs, rhs, label, held);
            observer.test(label, held, Atomic { op, lhs, rhs }, &result);
            return result;
        }
        self.comparison(op, lhs, rhs)
    }

    /// [`Env::comparison`] of an atomic test of `label`, which the labels hold as `held`, with
    /// nothing it reads told to the observer: a side that is `labels.LABEL` takes `held` without
    /// looking it up again.
    fn atomic_test(
        &self,
        op: BinaryOp,
        lhs: &Expr,
        rhs: &Expr,
        label: &str,
        held: Option<&'a Value>,
    ) -> Result<bool, EvalError> {
        compare(op, &*self.atomic_side(lhs, label, held)?, &*self.atomic_side(rhs, label, held)?)
    }

    /// A side of [`Env::atomic_test`].
    fn atomic_side<'x>(&self, expr: &'x Expr, label: &str, held: Option<&'a Value>) -> Result<Cow<'x, Value>, EvalError>
    where
        'a: 'x,
    {
        match expr {
            Expr::Label(id) if id == label => self.held_or_default(id, held).map(Cow::Borrowed),
            Expr::Const(value) => Ok(Cow::Borrowed(value)),
            // `default(labels.LABEL, C)` or `-N`, evaluated without the observer.
            _ => Env { observer: None, ..*self }.value(expr),
        }
    }

    /// A comparison (every binary operator but `and` and `or`, which [`Env::binary`] takes), of
    /// its sides borrowed where they can be.
    fn comparison(&self, op: BinaryOp, lhs: &Expr, rhs: &Expr) -> Result<bool, EvalError> {
        compare(op, &*self.value(lhs)?, &*self.value(rhs)?)
    }

    fn call(&self, function: &str, args: &[Expr]) -> Result<Value, EvalError> {
        if function == "default" {
            let [value, fallback] = args else { return Err(EvalError::Function("`default` takes 2 arguments".into())) };
            return match self.eval(value) {
                Ok(v) if !is_empty(&v) => Ok(v),
                Ok(_) | Err(EvalError::Unset(_)) => self.eval(fallback),
                Err(other) => Err(other),
            };
        }
        let values: Vec<Value> = args.iter().map(|a| self.eval(a)).collect::<Result<_, _>>()?;
        call(function, &values)
    }
}

/// `op(a, b)` for every binary operator but `and` and `or`.
fn compare(op: BinaryOp, a: &Value, b: &Value) -> Result<bool, EvalError> {
    Ok(match (op, a, b) {
        (BinaryOp::Eq, _, _) => a == b,
        (BinaryOp::Ne, _, _) => a != b,
        (BinaryOp::In, _, Value::List(items)) => items.contains(a),
        (BinaryOp::NotIn, _, Value::List(items)) => !items.contains(a),
        (BinaryOp::Lt, Value::Int(x), Value::Int(y)) => x < y,
        (BinaryOp::Le, Value::Int(x), Value::Int(y)) => x <= y,
        (BinaryOp::Gt, Value::Int(x), Value::Int(y)) => x > y,
        (BinaryOp::Ge, Value::Int(x), Value::Int(y)) => x >= y,
        (BinaryOp::Lt, Value::Str(x), Value::Str(y)) => x < y,
        (BinaryOp::Le, Value::Str(x), Value::Str(y)) => x <= y,
        (BinaryOp::Gt, Value::Str(x), Value::Str(y)) => x > y,
        (BinaryOp::Ge, Value::Str(x), Value::Str(y)) => x >= y,
        (BinaryOp::Matches, Value::Str(text), Value::Str(pattern)) => regex::Regex::new(pattern)
            .map_err(|e| EvalError::Regex { pattern: pattern.clone(), reason: e.to_string() })?
            .is_match(text),
        _ => return Err(EvalError::Type(format!("cannot apply {op:?} to {} and {}", a.literal(), b.literal()))),
    })
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Str(s) => s.is_empty(),
        Value::List(items) => items.is_empty(),
        Value::Map(entries) => entries.is_empty(),
        _ => false,
    }
}

/// Every function of the standard library, as stdlib/prelude.apt declares them: those of [`call`],
/// and `default`, which `Env` evaluates itself (its fallback only when needed). A test holds the
/// prelude, this list and [`call`] to each other, so a function cannot be declared and missing.
pub const FUNCTIONS: &[&str] = &[
    "lower",
    "upper",
    "trim",
    "starts_with",
    "ends_with",
    "contains",
    "replace",
    "trim_prefix",
    "trim_suffix",
    "truncate",
    "hash",
    "split",
    "join",
    "len",
    "default",
    "to_string",
    "to_int",
    "secret_env",
    "secret_file",
    "secret_k8s",
];

/// The standard library (stdlib/prelude.apt declares the signatures).
pub fn call(function: &str, args: &[Value]) -> Result<Value, EvalError> {
    let wrong = || EvalError::Function(format!("`{function}` got arguments of the wrong type"));
    let s = |i: usize| match args.get(i) {
        Some(Value::Str(s)) => Ok(s.as_str()),
        _ => Err(wrong()),
    };
    Ok(match function {
        "lower" => Value::Str(s(0)?.to_lowercase()),
        "upper" => Value::Str(s(0)?.to_uppercase()),
        "trim" => Value::Str(s(0)?.trim().to_string()),
        "starts_with" => Value::Bool(s(0)?.starts_with(s(1)?)),
        "ends_with" => Value::Bool(s(0)?.ends_with(s(1)?)),
        "contains" => Value::Bool(s(0)?.contains(s(1)?)),
        "replace" => Value::Str(s(0)?.replace(s(1)?, s(2)?)),
        "trim_prefix" => Value::Str(s(0)?.strip_prefix(s(1)?).unwrap_or(s(0)?).to_string()),
        "trim_suffix" => Value::Str(s(0)?.strip_suffix(s(1)?).unwrap_or(s(0)?).to_string()),
        "truncate" => match args.get(1) {
            Some(Value::Int(n)) if *n >= 0 => Value::Str(s(0)?.chars().take(*n as usize).collect()),
            Some(Value::Int(n)) => return Err(EvalError::Function(format!("`truncate` to {n} characters"))),
            _ => return Err(wrong()),
        },
        "hash" => Value::Str(format!("{:08x}", fnv1a(s(0)?.as_bytes()) as u32)),
        "split" => Value::List(s(0)?.split(s(1)?).map(|p| Value::Str(p.to_string())).collect()),
        "join" => match args.first() {
            Some(Value::List(items)) => Value::Str(items.iter().map(Value::to_string).collect::<Vec<_>>().join(s(1)?)),
            _ => return Err(wrong()),
        },
        "len" => Value::Int(match args.first() {
            Some(Value::Str(s)) => s.chars().count() as i64,
            Some(Value::List(items)) => items.len() as i64,
            Some(Value::Map(entries)) => entries.len() as i64,
            _ => return Err(wrong()),
        }),
        "to_string" => Value::Str(args.first().ok_or_else(wrong)?.to_string()),
        // A reference only: the secret is read when a driver applies the instance.
        "secret_env" => SecretRef::Env(s(0)?.to_string()).marker(),
        "secret_file" => SecretRef::File(s(0)?.to_string()).marker(),
        "secret_k8s" => SecretRef::Kube { name: s(0)?.to_string(), key: s(1)?.to_string() }.marker(),
        "to_int" => {
            let text = s(0)?;
            Value::Int(
                text.trim()
                    .parse()
                    .map_err(|_| EvalError::Function(format!("`to_int`: {text:?} is not an integer")))?,
            )
        }
        other => return Err(EvalError::Function(format!("unknown function `{other}`"))),
    })
}

/// FNV-1a, 64 bits: a tiny, stable hash (the same on every machine and release).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn str(s: &str) -> Value {
        Value::Str(s.to_string())
    }

    #[test]
    fn standard_library() {
        assert_eq!(call("lower", &[str("AbC")]), Ok(str("abc")));
        assert_eq!(call("trim_suffix", &[str("ada@example.com"), str("@example.com")]), Ok(str("ada")));
        assert_eq!(call("truncate", &[str("kubernetes"), Value::Int(4)]), Ok(str("kube")));
        assert_eq!(call("join", &[Value::List(vec![str("a"), str("b")]), str(",")]), Ok(str("a,b")));
        assert_eq!(call("len", &[Value::List(vec![str("a")])]), Ok(Value::Int(1)));
        assert_eq!(call("to_int", &[str(" 42 ")]), Ok(Value::Int(42)));
        assert!(call("to_int", &[str("x")]).is_err());
        assert_eq!(call("hash", &[str("a")]), call("hash", &[str("a")]));
        assert_eq!(call("hash", &[str("a")]).unwrap().to_string().len(), 8);
        assert_eq!(call("secret_env", &[str("PW")]), Ok(SecretRef::Env("PW".into()).marker()));
        let k8s = SecretRef::Kube { name: "db".into(), key: "pw".into() };
        assert_eq!(call("secret_k8s", &[str("db"), str("pw")]), Ok(k8s.marker()));
    }

    /// Records what an evaluation tells its observer.
    #[derive(Default)]
    struct Log(std::sync::Mutex<Vec<String>>);

    impl Observer for Log {
        fn read(&self, label: &str, value: Option<&Value>) {
            self.0.lock().unwrap().push(format!("read {label} {value:?}"));
        }
        fn test(&self, label: &str, value: Option<&Value>, _: Atomic<'_>, result: &Result<bool, EvalError>) {
            self.0.lock().unwrap().push(format!("test {label} {value:?} {result:?}"));
        }
        fn user(&self, field: &UserField) {
            self.0.lock().unwrap().push(format!("user {field:?}"));
        }
        fn claim(&self, field: ClaimField) {
            self.0.lock().unwrap().push(format!("claim {field:?}"));
        }
    }

    fn program(labels: &[(&str, &str, Option<Value>)]) -> Program {
        Program {
            labels: labels
                .iter()
                .map(|(id, ty, default)| {
                    (id.to_string(), crate::ir::LabelDecl { ty: ty.to_string(), default: default.clone() })
                })
                .collect(),
            ..Program::default()
        }
    }

    fn cmp(op: BinaryOp, lhs: Expr, rhs: Expr) -> Expr {
        Expr::Binary { op, lhs: Box::new(lhs), rhs: Box::new(rhs) }
    }

    #[test]
    fn an_observer_learns_atomic_tests_and_reads_in_order() {
        let program = program(&[("s.a", "string", None), ("s.b", "bool", Some(Value::Bool(false)))]);
        // `labels.a == "x" and labels.b`, then `lower(labels.a) == "x"` (not atomic: a read).
        let test = cmp(BinaryOp::Eq, Expr::Label("s.a".into()), Expr::Const(str("x")));
        let both = cmp(BinaryOp::And, test.clone(), Expr::Label("s.b".into()));
        let computed = cmp(
            BinaryOp::Eq,
            Expr::Call { function: "lower".into(), args: vec![Expr::Label("s.a".into())] },
            Expr::Const(str("x")),
        );
        let user = Subject::default();
        let log = Log::default();
        let labels = BTreeMap::from([("s.a".to_string(), str("x"))]);
        let env = Env { observer: Some(&log), ..Env::of_labels(&program, &labels, &user) };
        assert_eq!(env.bool(&both), Ok(false));
        assert_eq!(env.bool(&computed), Ok(true));
        assert_eq!(
            *log.0.lock().unwrap(),
            [r#"test s.a Some(Str("x")) Ok(true)"#, "read s.b None", r#"read s.a Some(Str("x"))"#]
        );
        // The test asked again of other values, with the evaluator's semantics (an unset label
        // without a default fails).
        let Expr::Binary { op, lhs, rhs } = &test else { unreachable!() };
        let atomic = Atomic { op: *op, lhs, rhs };
        assert_eq!(atomic.on(&program, &user, "s.a", Some(&str("y"))), Ok(false));
        assert!(matches!(atomic.on(&program, &user, "s.a", None), Err(EvalError::Unset(_))));
    }

    #[test]
    fn only_label_against_constant_is_atomic() {
        let label = Expr::Label("s.n".into());
        let one = Expr::Const(Value::Int(1));
        let minus = Expr::Neg(Box::new(one.clone()));
        let list = Expr::Const(Value::List(vec![str("a")]));
        assert_eq!(atomic_label(BinaryOp::Lt, &label, &one), Some("s.n"));
        assert_eq!(atomic_label(BinaryOp::Ge, &minus, &label), Some("s.n"));
        assert_eq!(atomic_label(BinaryOp::In, &label, &list), Some("s.n"));
        assert_eq!(atomic_label(BinaryOp::In, &Expr::Const(str("a")), &label), Some("s.n"));
        assert_eq!(atomic_label(BinaryOp::Eq, &label, &label), None);
        assert_eq!(atomic_label(BinaryOp::Matches, &label, &Expr::Const(str("a.*"))), None);
    }

    /// Expressions of every kind, with values set, defaulted, missing and of the wrong type.
    fn samples() -> Vec<Expr> {
        let label = |id: &str| Expr::Label(id.to_string());
        let constant = |value: Value| Expr::Const(value);
        let template = |parts: Vec<TemplatePart>| Expr::Template(Template { parts });
        let call = |function: &str, args: Vec<Expr>| Expr::Call { function: function.to_string(), args };
        let mut exprs = vec![
            constant(Value::Bool(true)),
            constant(str("x")),
            constant(Value::Int(-3)),
            constant(Value::List(vec![str("x"), Value::Int(1)])),
            constant(Value::Map(vec![("k".into(), str("v"))])),
            label("s.a"),
            label("s.b"),
            label("s.c"),
            label("s.n"),
            label("s.l"),
            Expr::Discovery { component: "db".into(), key: "url".into() },
            Expr::Discovery { component: "db".into(), key: "none".into() },
            Expr::Discovery { component: "none".into(), key: "url".into() },
            Expr::Value("tier".into()),
            Expr::Value("none".into()),
            Expr::Claim(ClaimField::Name),
            Expr::Claim(ClaimField::Id),
            Expr::Instance(InstanceField::Name),
            Expr::User(UserField::Name),
            Expr::User(UserField::Groups),
            Expr::Not(Box::new(label("s.b"))),
            Expr::Not(Box::new(label("s.a"))),
            Expr::Neg(Box::new(label("s.n"))),
            template(vec![TemplatePart::Text("v-".into()), TemplatePart::Expr(label("s.a"))]),
            template(vec![TemplatePart::Expr(Expr::Instance(InstanceField::Id))]),
            template(vec![TemplatePart::Expr(label("s.c"))]),
            call("lower", vec![label("s.a")]),
            call("default", vec![label("s.c"), constant(str("d"))]),
            call("len", vec![label("s.n")]),
            Expr::List(vec![label("s.a"), label("s.n")]),
        ];
        let sides = [
            label("s.a"),
            label("s.c"),
            label("s.n"),
            label("s.l"),
            constant(str("x")),
            constant(str("[")),
            constant(Value::Int(2)),
            Expr::Neg(Box::new(constant(Value::Int(2)))),
            constant(Value::List(vec![str("x")])),
            call("default", vec![label("s.c"), constant(str("x"))]),
            call("lower", vec![label("s.a")]),
        ];
        let ops = [
            BinaryOp::Eq,
            BinaryOp::Ne,
            BinaryOp::Lt,
            BinaryOp::Ge,
            BinaryOp::In,
            BinaryOp::NotIn,
            BinaryOp::Matches,
            BinaryOp::And,
            BinaryOp::Or,
        ];
        for op in ops {
            for lhs in &sides {
                for rhs in &sides {
                    exprs.push(cmp(op, lhs.clone(), rhs.clone()));
                }
            }
        }
        exprs.push(cmp(BinaryOp::And, label("s.b"), label("s.a")));
        exprs.push(cmp(BinaryOp::Or, Expr::Not(Box::new(label("s.b"))), label("s.a")));
        exprs
    }

    /// Evaluates `check(env)` in the sample environment, with or without an observer, and what
    /// the observer was told.
    fn observed<T>(observe: bool, check: impl Fn(&Env<'_>) -> T) -> (T, Vec<String>) {
        let program = program(&[
            ("s.a", "string", None),
            ("s.b", "bool", Some(Value::Bool(false))),
            ("s.c", "string", None),
            ("s.n", "int", Some(Value::Int(7))),
            ("s.l", "[string]", None),
        ]);
        let labels =
            BTreeMap::from([("s.a".to_string(), str("X")), ("s.l".to_string(), Value::List(vec![str("x"), str("y")]))]);
        let user = Subject { name: "ada".into(), groups: vec!["ops".into()], ..Subject::default() };
        let discovery = BTreeMap::from([("db".to_string(), BTreeMap::from([("url".to_string(), str("pg://db"))]))]);
        let values = [("tier".to_string(), str("gold"))];
        let log = Log::default();
        let env = Env {
            claim: ("k0", "apps", "id0"),
            instance: Some(("web-1", "i1")),
            discovery: Some(&discovery),
            values: Some(&values),
            observer: if observe { Some(&log) } else { None },
            ..Env::of_labels(&program, &labels, &user)
        };
        let result = check(&env);
        (result, log.0.into_inner().unwrap())
    }

    /// The fast paths (borrowed values, conditions without a `Value`, interpolations written in
    /// place, atomic tests without a second lookup) give what evaluating a whole `Value` gives:
    /// the same result or error, and the same observer calls in the same order.
    #[test]
    fn fast_paths_agree_with_evaluation() {
        let general_bool = |env: &Env<'_>, expr: &Expr| match env.eval(expr)? {
            Value::Bool(b) => Ok(b),
            other => Err(EvalError::Type(format!("a condition evaluated to {}", other.literal()))),
        };
        let general_render = |env: &Env<'_>, template: &Template| -> Result<String, EvalError> {
            let mut out = String::new();
            for part in &template.parts {
                match part {
                    TemplatePart::Text(text) => out.push_str(text),
                    TemplatePart::Expr(expr) => out.push_str(&env.eval(expr)?.to_string()),
                }
            }
            Ok(out)
        };
        let (mut oks, mut errors) = (0, 0);
        for expr in samples() {
            for observe in [false, true] {
                let eval = observed(observe, |env| env.eval(&expr));
                assert_eq!(observed(observe, |env| env.value(&expr).map(Cow::into_owned)), eval, "{expr:?}");
                let condition = observed(observe, |env| env.bool(&expr));
                assert_eq!(condition, observed(observe, |env| general_bool(env, &expr)), "{expr:?}");
                if condition.0.is_ok() {
                    oks += 1;
                } else {
                    errors += 1;
                }
                for parts in [
                    vec![TemplatePart::Expr(expr.clone())],
                    vec![
                        TemplatePart::Text("<".into()),
                        TemplatePart::Expr(expr.clone()),
                        TemplatePart::Text(">".into()),
                        TemplatePart::Expr(expr.clone()),
                    ],
                ] {
                    let template = Template { parts };
                    assert_eq!(
                        observed(observe, |env| env.render(&template)),
                        observed(observe, |env| general_render(env, &template)),
                        "{expr:?}"
                    );
                }
                // An atomic test asked of an observer is the test asked without one, its sides
                // evaluated whole.
                if let Expr::Binary { op, lhs, rhs } = &expr
                    && !matches!(op, BinaryOp::And | BinaryOp::Or)
                {
                    let whole = observed(false, |env| compare(*op, &env.eval(lhs)?, &env.eval(rhs)?)).0;
                    assert_eq!(condition.0, whole, "{expr:?}");
                }
            }
        }
        // The samples reach both outcomes many times.
        assert!(oks > 100 && errors > 100, "{oks} {errors}");
    }

    #[test]
    fn an_atomic_test_tells_the_held_value() {
        let test = cmp(BinaryOp::Lt, Expr::Label("s.n".into()), Expr::Const(Value::Int(9)));
        assert_eq!(observed(true, |env| env.bool(&test)), (Ok(true), vec!["test s.n None Ok(true)".to_string()]));
        let test = cmp(BinaryOp::Eq, Expr::Const(str("X")), Expr::Label("s.a".into()));
        let (result, log) = observed(true, |env| env.bool(&test));
        assert_eq!((result, log), (Ok(true), vec![r#"test s.a Some(Str("X")) Ok(true)"#.to_string()]));
        let test = cmp(BinaryOp::Eq, Expr::Label("s.c".into()), Expr::Const(str("X")));
        let (result, log) = observed(true, |env| env.bool(&test));
        assert_eq!(result, Err(EvalError::Unset("label `s.c`".into())));
        assert_eq!(log, [r#"test s.c None Err(Unset("label `s.c`"))"#]);
        // A side evaluated in full reads its label unobserved too.
        let fallback =
            Expr::Call { function: "default".into(), args: vec![Expr::Label("s.c".into()), Expr::Const(str("x"))] };
        let test = cmp(BinaryOp::Eq, fallback, Expr::Const(str("x")));
        assert_eq!(observed(true, |env| env.bool(&test)), (Ok(true), vec!["test s.c None Ok(true)".to_string()]));
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
