//! The aptc runtime: executes the resolution IR.
//!
//! [`resolve`] turns a lowered policy into the desired state (pure, deterministic, no I/O);
//! [`diff`] compares two desired states (the what-if of a policy change); [`graph`] draws one;
//! [`testing`] runs a policy's `test` blocks against it.
//!
//! Deploying: [`plan`] turns a desired state into deployable units and plans the actions from
//! what is applied to what is desired; [`apply`] carries a plan out with a [`driver`] (the
//! [`render`] driver writes into a directory; `helm` runs the real Helm binary; [`release`] runs
//! Helm releases on a cluster; `manifest` stamps the objects); [`store`] keeps the revisions; [`deploy`] ties them together for the CLI, refusing changes the
//! deploying user may not make ([`access`] computes roles, for the resolver too).
//! Nothing in the compiler depends on this crate.

pub mod access;
pub mod apply;
pub mod cluster;
pub mod connection;
pub mod deploy;
pub mod diff;
pub mod drift;
pub mod driver;
pub mod graph;
pub mod helm;
pub mod k8s;
pub mod manifest;
pub mod plan;
pub mod release;
pub mod render;
pub mod resolve;
pub mod retry;
pub mod secrets;
pub mod source;
pub mod store;
pub mod testing;
pub mod watch;
