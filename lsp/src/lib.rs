//! The aptc language server (`aptc lsp`): maps LSP requests to compiler queries.
//!
//! Built on `tower-lsp-server`, the maintained community fork of `tower-lsp`. It keeps one
//! compiler database ([`aptc_compiler::db::Database`]) with every `.apt` file of the
//! workspace folders, and answers each request with a query of
//! [`aptc_compiler::ide`]; it holds no policy logic of its own. [`convert`] translates between
//! the compiler's byte offsets and the protocol's UTF-16 positions.

pub mod convert;
mod server;
mod state;
mod transport;

pub use server::{Backend, DEBOUNCE, Options};
/// The protocol's types, as this server uses them.
pub use tower_lsp_server::ls_types;
use tower_lsp_server::{ClientSocket, LspService};
pub use transport::{Ending, serve};

/// The service and its client socket, without a transport ([`serve`] is the one `aptc lsp`
/// uses).
pub fn service(options: Options) -> (LspService<Backend>, ClientSocket) {
    LspService::new(move |client| Backend::new(client, options))
}

/// Serves the protocol on standard input and output until the client sends `exit` (or
/// closes the input). Logs go to standard error, through `tracing`.
pub fn run_stdio() -> std::io::Result<Ending> {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Panics inside requests are caught and answered; log them rather than print them.
        tracing::error!("panic: {info}");
        if std::env::var_os("RUST_BACKTRACE").is_some() {
            previous(info);
        }
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build()?;
    let ending = runtime.block_on(serve(tokio::io::stdin(), tokio::io::stdout(), Options::default()));
    // Blocking tasks still running (cancelled queries) must not keep the process alive.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    Ok(ending)
}
