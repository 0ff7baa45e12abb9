//! Clean stops on SIGINT (Ctrl-C) and SIGTERM (also SIGHUP), for `deploy`, `rollback` and `watch`:
//! the first signal cancels this process's [`Cancel`] ([`token`]), which the commands hand to the
//! runtime: no new action starts; what runs finishes and the revision records what was done. A
//! second signal exits at once (code 130). `deploy`, `rollback` and `watch` exit 130 once stopped.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use aptc_runtime::cancel::Cancel;

/// Exit code after an interrupt (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;

/// The token the first signal cancels (one per process: a process has one set of handlers).
pub fn token() -> Cancel {
    static CANCEL: OnceLock<Cancel> = OnceLock::new();
    CANCEL.get_or_init(Cancel::new).clone()
}

/// Takes over SIGINT and SIGTERM from now on (until then a signal ends aptc at once, as it should
/// at a prompt); `stopping` is printed on the first one, which cancels [`token`].
pub fn install(stopping: &'static str) -> anyhow::Result<()> {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    let cancel = token();
    ctrlc::set_handler(move || {
        if cancel.is_cancelled() {
            eprintln!("interrupted again: exiting now");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        tracing::info!("signal received: stopping");
        eprintln!("{stopping} (again to exit at once)");
        cancel.cancel();
    })
    .map_err(|e| anyhow::anyhow!("installing the signal handler: {e}"))
}
