//! The .apt compiler: source text → syntax tree → checked policy, with diagnostics.
//!
//! Stages are modules: [`syntax`] (lexer, parser, formatter, structural checks),
//! [`semantics`] (names, types, lints, access control), [`diagnostics`] (codes and
//! rendering), [`source`] (files and positions), [`lower`] (a checked policy to the core's
//! resolution IR), [`assertions`] (what `aptc verify` found, as diagnostics).
//! [`db`] is the incremental database every stage runs in; [`host`] is the front door the
//! CLI, benches and tests use (load, check, lower); [`ide`] holds the queries the language server asks.

pub mod access;
pub mod assertions;
pub mod check;
pub mod db;
pub mod diagnostics;
pub mod host;
pub mod ide;
pub mod lints;
pub mod lower;
pub mod semantics;
pub mod source;
pub mod syntax;
pub mod workspace;

/// A hash map with a fast hasher (foldhash, seeded per process), for the checker's per-file maps
/// that are filled for every claim; none of their orders reaches any output.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// A hash set with [`FastMap`]'s hasher.
pub(crate) type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
