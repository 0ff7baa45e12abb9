//! aptc in the cluster: policy bundles and claims as Kubernetes resources (`crd`), packed and
//! pushed by `aptc push` (`bundle`, `push`) or fetched from a Git commit (`git`), checked at admission (`admission`), and resolved and
//! applied by the controller (`run`), which serves the dashboard over its state (`dashboard`). It sits above the compiler (bundles are policy text to
//! check) and the runtime (which applies); the CLI's `aptc controller` and `aptc push` only call it.

pub mod admission;
pub mod bundle;
pub mod claims;
pub mod crd;
pub mod dashboard;
pub mod engine;
pub mod git;
pub mod lease;
pub mod manifests;
pub mod policy;
pub mod push;
pub mod run;
pub mod serve;
