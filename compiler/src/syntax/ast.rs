//! The syntax tree of one .apt file.
//!
//! Every node carries its byte span, so diagnostics, the formatter and the language
//! server can point at exact source. The tree is typed per construct (a `Claim` is not
//! a `Cluster`), and holds `Error` nodes where the parser recovered, so later stages
//! still see everything that did parse.

use serde::Serialize;
pub use smol_str::SmolStr;

pub use crate::source::Span;

/// A node with its span.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Spanned<T> {
    pub node: T,
    pub span: Span,
}

/// A name as written, e.g. a service name or a label key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Ident {
    pub text: SmolStr,
    pub span: Span,
}

/// A dotted name: `kafka`, `platform.kafka`, `labels.env`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct Path {
    pub segments: Vec<Ident>,
    pub span: Span,
}

/// A `{ … }` body: its statements and the span from `{` to `}` (inclusive).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Block<S> {
    pub stmts: Vec<Spanned<S>>,
    pub span: Span,
}

/// `///` lines before an item, joined, with the `///` and one space removed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Docs {
    pub text: String,
    pub span: Span,
}

/// One parsed file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SourceFile {
    pub items: Vec<Item>,
}

impl SourceFile {
    /// The components of the file's services, in order (the files a policy refers to, charts and
    /// manifests, are found through them).
    pub fn components(&self) -> impl Iterator<Item = &Component> {
        self.items
            .iter()
            .filter_map(|item| match &item.kind {
                ItemKind::Service(service) => Some(&service.body.stmts),
                _ => None,
            })
            .flatten()
            .filter_map(|stmt| match &stmt.node {
                ServiceStmt::Component(component) => Some(component),
                ServiceStmt::Error => None,
            })
    }
}

/// A top-level declaration with its doc comment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Item {
    pub docs: Option<Docs>,
    pub kind: ItemKind,
    pub span: Span,
}

/// The kinds of top-level declaration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ItemKind {
    Namespace(NamespaceDecl),
    Import(Box<Import>),
    Label(Box<LabelDecl>),
    Service(Service),
    Contract(Contract),
    Rule(Box<Rule>),
    Cluster(Cluster),
    Claim(Claim),
    User(User),
    Team(Team),
    UsersFrom(UsersFrom),
    Grant(Box<Grant>),
    Function(Box<FunctionDecl>),
    /// `test NAME { … }`: a policy test, run by `aptc test`.
    Test(TestBlock),
    /// `assert NAME { … }`: a statement about every possible claim, proved by `aptc verify`.
    Assert(AssertBlock),
    /// Text the parser skipped after a syntax error.
    Error,
}

/// `namespace analytics owned_by analytics_team`: which namespace a file's objects
/// belong to and which team owns it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NamespaceDecl {
    pub name: Ident,
    pub owner: Option<Ident>,
}

/// `import platform`, `import platform.kafka as kafka`, `import platform.{kafka, spark}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Import {
    pub path: Path,
    pub members: Option<Vec<Ident>>,
    pub alias: Option<Ident>,
}

/// `label env: "dev" | "prod" = "dev"`: a label key with its type and default.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LabelDecl {
    pub name: Ident,
    pub ty: TypeExpr,
    pub default: Option<Expr>,
}

/// A type as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TypeExpr {
    pub kind: TypeExprKind,
    pub span: Span,
}

/// The forms of a type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum TypeExprKind {
    /// `string`, `int`, `bool`, `any`.
    Named(Ident),
    /// `"dev" | "stage" | "prod"`.
    Enum(Vec<StrLit>),
    /// `[string]`.
    List(Box<TypeExpr>),
}

/// `service NAME { component … }`: what a team runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Service {
    pub name: Ident,
    pub body: Block<ServiceStmt>,
}

/// What a service body holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ServiceStmt {
    Component(Component),
    Error,
}

/// `component NAME SOURCE [{ … }]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Component {
    pub docs: Option<Docs>,
    pub name: Ident,
    pub source: Spanned<ComponentSource>,
    pub body: Option<Block<ComponentStmt>>,
}

/// Where a component comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ComponentSource {
    /// `uses platform.kafka`: an instance of another contract.
    Uses(Path),
    /// `chart "spark"`: a Helm chart (name, local path, or `oci://` reference).
    Chart(StrLit),
    /// `manifests "k8s/*.yaml"`: raw Kubernetes manifests from files.
    Manifests(StrLit),
}

/// Statements in a component body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ComponentStmt {
    Repo(StrLit),
    Version(StrLit),
    When(Expr),
    After(Vec<Ident>),
    Values(MapLit),
    Discovery(MapLit),
    Error,
}

/// `contract NAME { set…/remove…; context … }`: what consumers ask for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Contract {
    pub name: Ident,
    pub body: Block<ContractStmt>,
}

/// Statements in a contract body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ContractStmt {
    LabelOp(LabelOp),
    Context(Context),
    Error,
}

/// `context NAME [when EXPR] { … }`: one way to serve a consumer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Context {
    pub docs: Option<Docs>,
    pub name: Ident,
    pub criteria: Option<Expr>,
    pub body: Block<ContextStmt>,
}

/// Statements in a context body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ContextStmt {
    LabelOp(LabelOp),
    /// `allocate per EXPR, …`: the keys that decide which consumers share an instance.
    Allocate(Vec<Expr>),
    /// `use SERVICE`.
    Use(Path),
    Error,
}

/// A change to the label set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum LabelOp {
    /// `set labels.KEY = EXPR`.
    Set { label: Ident, value: Expr },
    /// `remove labels.KEY`.
    Remove { label: Ident },
}

/// `rule NAME [weight N] [when EXPR] { … }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub name: Ident,
    pub weight: Option<Spanned<i64>>,
    pub criteria: Option<Expr>,
    pub body: Block<RuleStmt>,
}

/// Actions in a rule body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum RuleStmt {
    LabelOp(LabelOp),
    /// `reject "message"`.
    Reject(StrLit),
    /// `place on CLUSTER [namespace EXPR]`.
    Place {
        cluster: Path,
        namespace: Option<Expr>,
    },
    Error,
}

/// `cluster NAME { … }`: a deployment target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Cluster {
    pub name: Ident,
    pub body: Block<ClusterStmt>,
}

/// Statements in a cluster body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ClusterStmt {
    /// `context "kind-us-east"`: the kubeconfig context.
    Context(StrLit),
    /// `kubeconfig "path"`.
    Kubeconfig(StrLit),
    /// `kubeconfig secret "NAME" [key "KEY"]`: the kubeconfig held by a Kubernetes Secret of the
    /// home cluster (docs/language.md §8.1).
    KubeconfigSecret {
        name: StrLit,
        key: Option<StrLit>,
    },
    /// `kubeconfig in_cluster`: the home cluster itself (`span`: the word `in_cluster`).
    InCluster(Span),
    /// `namespace "default"`: the default Kubernetes namespace.
    Namespace(StrLit),
    Labels(MapLit),
    Error,
}

/// `claim NAME { … }`: a consumer's request for a contract.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Claim {
    pub name: Ident,
    pub body: Block<ClaimStmt>,
}

/// Statements in a claim body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ClaimStmt {
    User(StrLit),
    Team(Ident),
    Contract(Path),
    Labels(MapLit),
    Error,
}

/// `user "alice@example.com" { … }`: a consumer, with the facts rules may read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: StrLit,
    pub body: Option<Block<UserStmt>>,
}

/// Statements in a user body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum UserStmt {
    Team(Ident),
    Groups(Vec<Expr>),
    Labels(MapLit),
    Error,
}

/// `team NAME [{ labels {…} }]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Team {
    pub name: Ident,
    pub body: Option<Block<TeamStmt>>,
}

/// Statements in a team body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum TeamStmt {
    Labels(MapLit),
    Error,
}

/// `users from "users.yaml"`: users kept outside the policy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UsersFrom {
    pub path: StrLit,
}

/// `grant ROLE [on NS, … | on *] [when EXPR]`: who may do what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Grant {
    pub role: Ident,
    pub scope: Option<Spanned<GrantScope>>,
    pub criteria: Option<Expr>,
}

/// The namespaces a grant covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum GrantScope {
    All,
    Namespaces(Vec<Ident>),
}

/// `fn lower(s: string) -> string`: a standard-library function signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FunctionDecl {
    pub name: Ident,
    pub params: Vec<Param>,
    pub ret: TypeExpr,
}

/// A function parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Param {
    pub name: Ident,
    pub ty: TypeExpr,
}

/// `test NAME { … }`: a policy test (docs/language.md §18).
///
/// A test resolves the whole policy, plus the claims and users declared in its body, and
/// checks the outcome against its `expect` statements. The test's own claims and users
/// exist only while the test runs: other tests and the policy never see them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TestBlock {
    pub name: Ident,
    pub body: Block<TestStmt>,
}

/// Statements in a test body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum TestStmt {
    /// `claim NAME { … }`: a claim added to the policy for this test only; it belongs to the
    /// test's namespace.
    Claim(Claim),
    /// `user "NAME" [{ … }]`: a user added to the policy for this test only.
    User(User),
    /// `expect …`: what the resolved policy must look like.
    Expect(Expect),
    Error,
}

/// An `expect` statement: one assertion about the desired state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Expect {
    /// `expect claim CLAIM resolved` or `expect claim CLAIM rejected [matches "REGEX"]`.
    Claim(ExpectClaim),
    /// `expect instance SERVICE.COMPONENT for CLAIM [{ … }]`.
    Instance(ExpectInstance),
    /// `expect no instance SERVICE.COMPONENT for CLAIM`: the claim produces no instance of
    /// that component (it is rejected, or never reaches the component).
    NoInstance(ExpectNoInstance),
    /// `expect instances N`: the desired state holds exactly `N` component instances (every
    /// instance of a chart, manifests or `uses` component; service instances are not
    /// counted). The span is the number's.
    Instances(Spanned<i64>),
}

/// `expect claim CLAIM resolved | rejected [matches "REGEX"]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpectClaim {
    /// The claim: one of the test's own, or a claim of the policy (`name` or `namespace.name`).
    pub claim: Path,
    pub outcome: Spanned<ClaimOutcome>,
}

/// What should become of a claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ClaimOutcome {
    /// `resolved`: the claim resolves without error.
    Resolved,
    /// `rejected [matches "REGEX"]`: the claim does not resolve (a rule rejects it, or
    /// resolution fails). With a pattern, the message (the rule's `reject` message, or the
    /// error) must match the regular expression, anywhere, as `matches` does in expressions.
    Rejected { pattern: Option<StrLit> },
}

/// `expect instance SERVICE.COMPONENT for CLAIM [{ … }]`: the claim produces an instance of
/// the component, and the instance has what the body lists (anything not listed is not
/// compared).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpectInstance {
    /// `service.component` or `namespace.service.component`.
    pub component: Path,
    pub claim: Path,
    pub body: Option<Block<InstanceStmt>>,
}

/// `expect no instance SERVICE.COMPONENT for CLAIM`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExpectNoInstance {
    /// `service.component` or `namespace.service.component`.
    pub component: Path,
    pub claim: Path,
}

/// What an expected instance must have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum InstanceStmt {
    /// `context NAME`: the context chosen for the instance's contract.
    Context(Ident),
    /// `cluster NAME`: the cluster it is placed on.
    Cluster(Path),
    /// `namespace "NAME"`: the Kubernetes namespace it is placed in.
    Namespace(StrLit),
    /// `values { key = value, … }`: these entries of the instance's evaluated `values` must
    /// equal the given constants; entries not listed are not compared.
    Values(MapLit),
    Error,
}

/// `assert NAME { … }` (docs/language.md §19): what must hold of every possible claim the
/// `for` and `when` statements describe.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AssertBlock {
    pub name: Ident,
    pub body: Block<AssertStmt>,
}

/// Statements in an assertion's body.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum AssertStmt {
    /// `for …`: which consumers or contracts the possible claims have.
    For(ForClause),
    /// `when EXPR`: only claims whose initial labels make it true are concerned.
    When(Expr),
    /// `expect …`: what must hold of each of them.
    Expect(Spanned<Assertion>),
    Error,
}

/// What a `for` statement adds to an assertion's possible claims.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ForClause {
    /// `for user "NAME"`.
    User(StrLit),
    /// `for users in team TEAM`: every user of the team.
    TeamUsers(Ident),
    /// `for users in group "GROUP"`: every user with the group.
    Group(StrLit),
    /// `for team TEAM`: claims the team files itself.
    Team(Ident),
    /// `for contract PATH`.
    Contract(Path),
}

/// What an assertion expects of each possible claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Assertion {
    Resolved,
    /// Does not resolve (rejected by a rule, or failed).
    Rejected,
    /// Failed, not by a rule.
    Failed,
    /// `placed on C1, C2`: every instance on one of these clusters.
    PlacedOn(Vec<Path>),
    /// `[never] reaches X`: a contract, service or `SERVICE.COMPONENT`.
    Reaches {
        never: bool,
        target: Path,
    },
    /// `[never] shares with user "U" | team T | others`.
    Shares {
        never: bool,
        with: Party,
    },
    /// `that EXPR`: true at the claimed contract.
    That(Expr),
}

/// Whose claims a sharing expectation compares with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Party {
    User(StrLit),
    Team(Ident),
    /// Any consumer other than the possible claim's own.
    Others,
}

/// An expression.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// The forms of an expression.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum ExprKind {
    Int(i64),
    Bool(bool),
    Str(StrLit),
    List(Vec<Expr>),
    Map(MapLit),
    /// `labels.env`, `user.name`, `kafka.discovery.url`.
    Path(Path),
    /// `lower(labels.team)`.
    Call {
        func: Box<Ident>,
        args: Vec<Expr>,
    },
    Unary {
        op: UnaryOp,
        expr: Box<Expr>,
    },
    Binary {
        op: BinaryOp,
        lhs: Box<Expr>,
        rhs: Box<Expr>,
    },
    /// `( … )`, kept so the formatter prints what the author wrote.
    Paren(Box<Expr>),
    /// An expression that failed to parse.
    Error,
}

/// Prefix operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum UnaryOp {
    Not,
    Neg,
}

/// Infix operators, loosest first: `or`, `and`, then comparisons (non-associative).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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

impl BinaryOp {
    /// The operator as written.
    pub fn as_str(self) -> &'static str {
        match self {
            BinaryOp::Or => "or",
            BinaryOp::And => "and",
            BinaryOp::Eq => "==",
            BinaryOp::Ne => "!=",
            BinaryOp::Lt => "<",
            BinaryOp::Le => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::Ge => ">=",
            BinaryOp::In => "in",
            BinaryOp::NotIn => "not in",
            BinaryOp::Matches => "matches",
        }
    }
}

/// A string literal, split into text and `${…}` interpolations.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StrLit {
    pub parts: Vec<StrPart>,
    pub span: Span,
}

impl StrLit {
    /// The literal's value when it has no interpolation.
    pub fn as_plain(&self) -> Option<String> {
        self.parts
            .iter()
            .map(|part| match part {
                StrPart::Text(text) => Some(text.as_str()),
                StrPart::Interp(_) => None,
            })
            .collect()
    }
}

/// A piece of a string literal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum StrPart {
    /// Literal text, escapes already decoded.
    Text(SmolStr),
    /// `${ EXPR }`.
    Interp(Expr),
}

/// `{ key = value, … }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapLit {
    pub entries: Vec<MapEntry>,
    pub span: Span,
}

/// One `key = value` of a map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MapEntry {
    pub key: MapKey,
    pub value: Expr,
    pub span: Span,
}

/// A map key: a bare name or a quoted string (for keys like `"app.kubernetes.io/name"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum MapKey {
    Name(Ident),
    Str(StrLit),
}

impl MapKey {
    /// The key's span.
    pub fn span(&self) -> Span {
        match self {
            MapKey::Name(ident) => ident.span,
            MapKey::Str(lit) => lit.span,
        }
    }
}

// The tree of a large policy is held whole while it is checked (a claim's nodes are ~1 KB), so
// its nodes stay small: the items and expressions that are rare and large are boxed.
const _: () = assert!(std::mem::size_of::<Item>() <= 112);
const _: () = assert!(std::mem::size_of::<Expr>() <= 48);
