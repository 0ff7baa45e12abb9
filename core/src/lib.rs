//! The meaning of an `.apt` policy, and nothing else: pure functions over plain data.
//!
//! [`ir`] is the resolution IR the compiler lowers a checked policy to (versioned serde types and
//! the wire constants). [`eval`] is the one evaluator of IR expressions and templates, with the
//! standard library; [`access`] computes roles from grants and ownership with it; [`resolve`]
//! turns a program and its claims into the desired state; [`diff`] compares two desired states,
//! [`graph`] draws one, [`testing`] runs a policy's `test` blocks. [`secret`] recognises and
//! redacts secret references; [`digest`] names contents by SHA-256; [`manifest`] splits a YAML stream into documents;
//! [`intern`] shares one `Arc` among equal values.
//!
//! Invariant: no I/O, no async, no clock, no global state; the same program gives byte-identical
//! results on any number of threads. The compiler's checker, the resolver, deploys and proofs all
//! ask this crate, so they cannot disagree.

pub mod access;
pub mod changes;
pub mod diff;
pub mod digest;
pub mod eval;
pub mod graph;
pub mod intern;
pub mod ir;
pub mod manifest;
pub mod resolve;
pub mod secret;
pub mod testing;
pub mod verify;

/// A hash map with a fast hasher (foldhash, seeded per process): the core's maps are hot, and
/// none of their orders reaches any output.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A hash set with [`FastMap`]'s hasher.
pub(crate) type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
