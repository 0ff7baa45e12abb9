//! The resolution IR: a checked policy lowered to what the resolver needs, and nothing else.
//!
//! Every name is resolved (labels are `namespace.key`, objects `namespace.name`), every
//! expression is a typed tree of known operations, components are in dependency order and
//! rules in evaluation order. It is plain serde data, versioned: `aptc build` writes it and the
//! runtime loads it, or lowers sources on the fly ([`lower::lower`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The version of the IR format. Bump it on any change to these types.
pub const IR_VERSION: u32 = 4;

/// The `format` tag every IR file carries.
pub const IR_FORMAT: &str = "aptc-ir";

/// The namespace of what is global: clusters, users, teams, users files, grants, global rules.
pub const SYSTEM_NAMESPACE: &str = "system";

/// The map key that marks a reference to a secret in resolved values ([`crate::secret`]): no map
/// literal may use it, so a policy cannot forge one.
pub const SECRET_KEY: &str = "$secret";

/// A lowered policy (`Default`: the empty one, which lowering and tests fill in).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Program {
    pub format: String,
    pub version: u32,
    /// The aptc version that wrote it (informative).
    pub compiler: String,
    /// `namespace.key` → declaration.
    pub labels: BTreeMap<String, LabelDecl>,
    /// Namespace → owning team.
    pub namespaces: BTreeMap<String, Option<String>>,
    /// `namespace.name` → service.
    pub services: BTreeMap<String, Service>,
    /// `namespace.name` → contract.
    pub contracts: BTreeMap<String, Contract>,
    /// Rules by namespace, each list in evaluation order (weight, then name).
    pub rules: BTreeMap<String, Vec<Rule>>,
    /// `system.name` → cluster.
    pub clusters: BTreeMap<String, Cluster>,
    /// Lower-cased user name → user (declared and from users files).
    pub users: BTreeMap<String, User>,
    pub teams: BTreeMap<String, Team>,
    pub grants: Vec<Grant>,
    /// Claims in resolution order (namespace, then name).
    pub claims: Vec<Claim>,
    /// The policy's `test` blocks, in namespace order, then as written (`aptc test`).
    pub tests: Vec<TestCase>,
    /// The policy's `assert` blocks, in namespace order, then as written (`aptc verify`; added in
    /// IR version 4).
    pub assertions: Vec<Assertion>,
}

/// Where something was written, for explanations.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Origin {
    pub file: std::sync::Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A constant value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Value {
    Bool(bool),
    Int(i64),
    Str(String),
    List(Vec<Value>),
    /// Entries in written order, keys unique.
    Map(Vec<(String, Value)>),
}

impl Value {
    /// The value as JSON (object keys come out sorted).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(n) => serde_json::Value::from(*n),
            Value::Str(s) => serde_json::Value::String(s.clone()),
            Value::List(items) => serde_json::Value::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(entries) => {
                serde_json::Value::Object(entries.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }

    /// [`Value::to_json`] of a value no longer needed: its strings move into the JSON instead of
    /// being copied (the resolver's instance values, built per instance and then dropped).
    pub fn into_json(self) -> serde_json::Value {
        match self {
            Value::Str(s) => serde_json::Value::String(s),
            Value::List(items) => serde_json::Value::Array(items.into_iter().map(Value::into_json).collect()),
            Value::Map(entries) => {
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, v.into_json())).collect())
            }
            scalar => scalar.to_json(),
        }
    }
}

impl std::fmt::Display for Value {
    /// The text of a value as interpolation writes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(n) => write!(f, "{n}"),
            Value::Str(s) => f.write_str(s),
            Value::List(items) => {
                let shown: Vec<String> = items.iter().map(Value::literal).collect();
                write!(f, "[{}]", shown.join(", "))
            }
            Value::Map(entries) => {
                let shown: Vec<String> = entries.iter().map(|(k, v)| format!("{k} = {}", v.literal())).collect();
                write!(f, "{{ {} }}", shown.join(", "))
            }
        }
    }
}

impl Value {
    /// The value as a literal of the language (strings quoted).
    pub fn literal(&self) -> String {
        match self {
            Value::Str(s) => format!("{s:?}"),
            other => other.to_string(),
        }
    }
}

/// A declared label.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelDecl {
    /// `string`, `int`, `bool`, `any`, `[T]` or `"a" | "b"`, as written.
    pub ty: String,
    pub default: Option<Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// In dependency order, then declaration order.
    pub components: Vec<Component>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Component {
    pub name: String,
    pub source: Source,
    pub criteria: Option<Expr>,
    /// Names of the components it depends on (directly).
    pub after: Vec<String>,
    pub values: Vec<(Template, Expr)>,
    pub discovery: Vec<(String, Expr)>,
    pub origin: Origin,
}

/// What a component deploys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Chart {
        chart: String,
        repo: Option<String>,
        version: Option<String>,
        base_dir: String,
    },
    Manifests {
        glob: String,
        base_dir: String,
        /// The matched files, in sorted path order, as templates (docs/language.md §5.2): what
        /// is deployed is rendered from these, never read from disk again.
        templates: Vec<ManifestTemplate>,
    },
    /// `namespace.name` of a contract.
    Uses {
        contract: String,
    },
}

/// Whether a chart component's `CHART` is a chart on disk (docs/language.md §5.1): a path
/// starting with `./`, `../` or `/`, when the component has no `repo` (with a `repo`, `CHART` is a
/// chart name in that repository). The one rule for both sides: the checker reports a local chart
/// that cannot be used (APT0210) and does not ask it for a version (APT0150); the runtime hands it
/// to Helm as a path relative to the declaring file's directory.
pub fn is_local_chart(chart: &str, has_repo: bool) -> bool {
    !has_repo && (chart.starts_with("./") || chart.starts_with("../") || chart.starts_with('/'))
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contract {
    pub namespace: String,
    pub name: String,
    pub ops: Vec<LabelOp>,
    pub contexts: Vec<Context>,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Context {
    pub name: String,
    pub criteria: Option<Expr>,
    pub ops: Vec<LabelOp>,
    pub allocate: Vec<Expr>,
    /// `namespace.name` of the service.
    pub service: String,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelOp {
    Set { label: String, value: Expr },
    Remove { label: String },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub namespace: String,
    pub name: String,
    pub weight: i64,
    pub criteria: Option<Expr>,
    pub actions: Vec<Action>,
    pub origin: Origin,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Label(LabelOp),
    Reject { message: Template },
    Place { cluster: String, namespace: Option<Expr> },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    pub name: String,
    pub context: Option<String>,
    /// As written: relative to `base_dir`, or `~/…`.
    pub kubeconfig: Option<String>,
    /// Where the kubeconfig comes from when it is not a file (`kubeconfig secret …`,
    /// `kubeconfig in_cluster`); absent from the IR of clusters without it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    pub namespace: Option<String>,
    pub labels: BTreeMap<String, Value>,
    /// The directory of the file that declares the cluster.
    pub base_dir: String,
}

/// The key of a kubeconfig Secret when `kubeconfig secret "NAME"` names none.
pub const KUBECONFIG_KEY: &str = "kubeconfig";

/// A cluster's credentials that are no file (docs/language.md §8.1), found through the *home*
/// cluster: the controller's own cluster and namespace, or for a deploy from a laptop the current
/// context of the ambient kubeconfig and its namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Credentials {
    /// The kubeconfig held by the key `key` of the Secret `name` in the home namespace.
    Secret { name: String, key: String },
    /// The home cluster itself, with the home's own credentials (in a pod, its service account).
    InCluster,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub team: Option<String>,
    pub groups: Vec<String>,
    pub labels: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub name: String,
    pub labels: BTreeMap<String, Value>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Grant {
    /// `domain_admin`, `namespace_admin` or `consumer`.
    pub role: String,
    /// `None`: every namespace but `system`.
    pub namespaces: Option<Vec<String>>,
    pub criteria: Option<Expr>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// Shared by the claims of a namespace (lowering shares it), as `contract` by the claims of a
    /// contract: 100,000 claims name a few namespaces and contracts. Serialized as the string.
    pub namespace: Arc<str>,
    pub name: String,
    pub consumer: Consumer,
    pub contract: Arc<str>,
    /// Shared by the claims that write the same labels (lowering shares them within a file): on
    /// Aptomi's engine shape 100,000 claims write a few hundred distinct maps, and a map of its
    /// own per claim was ~570 bytes, alive until the plan is written. Serialized as the map.
    pub labels: Arc<BTreeMap<String, Value>>,
    pub origin: Origin,
}

impl Claim {
    /// `namespace.name`, unique in the policy.
    pub fn id(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

/// Who a claim is for. The name is shared by the claims of one user or team (lowering shares
/// it: 100,000 claims of 200 users hold 200 names); serialized as the string.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consumer {
    User(Arc<str>),
    Team(Arc<str>),
}

/// A `test` block: claims and users added to the policy for this test only, and what the
/// desired state must then look like (docs/language.md §18).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TestCase {
    /// The namespace of the test's file; its claims belong to it.
    pub namespace: String,
    pub name: String,
    pub origin: Origin,
    /// Claims of the test (in the test's namespace), resolved with the policy's.
    pub claims: Vec<Claim>,
    /// Users of the test, added to the policy's for this test.
    pub users: Vec<User>,
    pub expects: Vec<Expectation>,
}

impl TestCase {
    /// `namespace.name`, unique in the policy.
    pub fn id(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

/// One `expect` statement of a test.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Expectation {
    pub expect: Expect,
    pub origin: Origin,
}

/// What a test expects of the desired state. Claims are ids (`namespace.name`), services
/// `namespace.name`, clusters `system.name`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    /// `expect claim C resolved`.
    Resolved { claim: String },
    /// `expect claim C rejected [matches "PATTERN"]`: the claim does not resolve (a rule
    /// rejects it, or it fails); the pattern, if any, must match its reason.
    Rejected { claim: String, pattern: Option<String> },
    /// `expect instance S.C for CLAIM { … }`: the claim needs an instance of component
    /// `component` of service `service` that has every property given.
    Instance {
        service: String,
        component: String,
        claim: String,
        context: Option<String>,
        cluster: Option<String>,
        namespace: Option<String>,
        /// Entries the instance's `values` must have (maps compared entry by entry).
        values: Vec<(String, Value)>,
    },
    /// `expect no instance S.C for CLAIM`.
    NoInstance { service: String, component: String, claim: String },
    /// `expect instances N`: the number of component instances in the desired state.
    Instances { count: i64 },
}

/// One manifest file of a `manifests` component.
/// An `assert` block (docs/language.md §19): what must hold of every possible claim it describes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assertion {
    pub namespace: String,
    pub name: String,
    pub origin: Origin,
    /// Whose claims: empty for every declared user and team.
    pub consumers: Vec<Quantifier>,
    /// Which contracts (ids): empty for every contract the consumer may consume.
    pub contracts: Vec<String>,
    /// Only claims whose initial labels make it true.
    pub criteria: Option<Expr>,
    pub expects: Vec<AssertExpectation>,
}

impl Assertion {
    /// `namespace.name`.
    pub fn id(&self) -> String {
        format!("{}.{}", self.namespace, self.name)
    }
}

/// The consumers a `for` statement adds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quantifier {
    /// One user, by its lower-cased name.
    User(String),
    /// Every user of the team.
    TeamUsers(String),
    /// Every user with the group.
    Group(String),
    /// Claims filed by the team itself.
    Team(String),
}

/// One `expect` of an assertion, with where it is written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AssertExpectation {
    pub expect: Outcome,
    pub origin: Origin,
}

/// What an assertion expects of each possible claim (docs/language.md §19.2).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Resolved,
    Rejected,
    Failed,
    /// Every instance on one of these clusters (ids).
    PlacedOn {
        clusters: Vec<String>,
    },
    Reaches {
        never: bool,
        target: Target,
    },
    Shares {
        never: bool,
        with: Party,
    },
    /// True at the claimed contract.
    That {
        expr: Expr,
    },
}

/// What `reaches` names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Contract(String),
    Service(String),
    Component { service: String, component: String },
}

/// Whose claims `shares` compares with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// A user, by its lower-cased name.
    User(String),
    /// Claims of the team and of its users.
    Team(String),
    /// Any other consumer.
    Others,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ManifestTemplate {
    /// The path relative to the directory of the declaring file, `/`-separated.
    pub path: String,
    /// Its text and interpolations; `\${` is already a literal `${` here.
    pub template: Template,
}

/// A string with interpolations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Template {
    pub parts: Vec<TemplatePart>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplatePart {
    Text(String),
    Expr(Expr),
}

/// A resolved, typed expression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Expr {
    Const(Value),
    Template(Template),
    List(Vec<Expr>),
    Map(Vec<(Template, Expr)>),
    /// `labels.KEY`, by `namespace.key`.
    Label(String),
    User(UserField),
    Claim(ClaimField),
    Cluster(ClusterField),
    Instance(InstanceField),
    /// `values.KEY`: an entry of the component's evaluated `values`, in its manifest templates.
    Value(String),
    /// `C.discovery.KEY` of a component of the same service.
    Discovery {
        component: String,
        key: String,
    },
    Call {
        function: String,
        args: Vec<Expr>,
    },
    Not(Box<Expr>),
    Neg(Box<Expr>),
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserField {
    Name,
    Team,
    Groups,
    Label(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimField {
    Name,
    Namespace,
    Id,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClusterField {
    Name,
    Namespace,
    Label(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstanceField {
    Name,
    Id,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    NotIn,
    Matches,
}

/// Why an IR file cannot be loaded.
#[derive(Debug, Error)]
pub enum LoadError {
    #[error("not an aptc IR file: {0}")]
    NotIr(String),
    #[error(
        "this IR was written by aptc {compiler} in format version {found}; this aptc reads version {expected}: rebuild it with `aptc build`"
    )]
    Version { found: u32, expected: u32, compiler: String },
}

impl Program {
    /// Serialises the program (JSON: diffable, and readable by other tools).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("IR values always serialise")
    }

    /// Loads a program written by [`Program::to_json`], checking its format and version first.
    pub fn from_json(text: &str) -> Result<Program, LoadError> {
        #[derive(Deserialize)]
        struct Header {
            format: String,
            version: u32,
            #[serde(default)]
            compiler: String,
        }
        let header: Header = serde_json::from_str(text).map_err(|e| LoadError::NotIr(e.to_string()))?;
        if header.format != IR_FORMAT {
            return Err(LoadError::NotIr(format!("format is `{}`, not `{IR_FORMAT}`", header.format)));
        }
        if header.version != IR_VERSION {
            return Err(LoadError::Version { found: header.version, expected: IR_VERSION, compiler: header.compiler });
        }
        serde_json::from_str(text).map_err(|e| LoadError::NotIr(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::Value;

    #[test]
    fn into_json_gives_what_to_json_gives() {
        let text = |s: &str| Value::Str(s.to_string());
        let value = Value::Map(vec![
            ("b".to_string(), Value::List(vec![Value::Int(1), Value::Bool(true), text("x")])),
            ("a".to_string(), Value::Map(vec![("c".to_string(), text("y")), ("d".to_string(), Value::List(vec![]))])),
        ]);
        assert_eq!(value.clone().into_json(), value.to_json());
    }
}
