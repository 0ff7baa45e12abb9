//! The .apt compiler: source text → syntax tree → checked policy, with diagnostics.
//!
//! Stages are modules: [`syntax`] (lexer, parser, formatter, structural checks),
//! [`diagnostics`] (codes and rendering), [`source`] (files and positions), and
//! [`check`], the front door the CLI and language server call.

pub mod check;
pub mod diagnostics;
pub mod source;
pub mod syntax;
pub mod workspace;
