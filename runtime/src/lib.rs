//! The aptc runtime: executes the resolution IR.
//!
//! [`resolve`] turns a lowered policy into the desired state (pure, deterministic, no I/O);
//! [`diff`] compares two desired states (the what-if of a policy change); [`graph`] draws one;
//! [`testing`] runs a policy's `test` blocks against it.
//! Planning against live clusters, applying through Helm and Kubernetes, and the revision
//! store come with the runtime issue; nothing in the compiler depends on this crate.

pub mod diff;
pub mod graph;
pub mod resolve;
pub mod testing;
