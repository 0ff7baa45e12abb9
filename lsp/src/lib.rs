//! The aptc language server: maps LSP requests to compiler queries.
//!
//! It is built by the language-server issue on `tower-lsp-server`; until then the crate
//! only fixes the place of this layer in the workspace (above the compiler, beside the CLI).
