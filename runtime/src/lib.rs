//! The aptc runtime: executes the resolution IR (resolve, plan, apply, store).
//!
//! It is built by the resolver and runtime issues; until then the crate only fixes the
//! place of this layer in the workspace (it depends on `aptc-compiler`, and nothing in
//! the compiler depends on it).
