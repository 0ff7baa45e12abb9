//! The .apt compiler: source text → syntax tree → checked policy, with diagnostics.
//!
//! Stages are modules: [`syntax`] (lexer, parser, formatter, structural checks),
//! [`semantics`] (names, types, lints, access control), [`diagnostics`] (codes and
//! rendering), [`source`] (files and positions), [`ir`] (the resolution IR and lowering),
//! [`manifest`] (YAML streams split into documents, shared with the runtime).
//! [`db`] is the incremental database every stage runs in; [`check`] is the front door the
//! CLI calls; [`ide`] holds the queries the language server asks.

pub mod check;
pub mod db;
pub mod diagnostics;
pub mod ide;
pub mod ir;
pub mod manifest;
pub mod semantics;
pub mod source;
pub mod syntax;
pub mod workspace;
