//! Clean stops on SIGINT (Ctrl-C) and SIGTERM (also SIGHUP), for `deploy`, `rollback` and `watch`:
//! the first signal asks the runtime to start no new action ([`aptc_runtime::apply::interrupt`]);
//! what runs finishes and the revision records what was done. A second signal exits at once
//! (code 130).

use std::sync::atomic::{AtomicBool, Ordering};

/// Exit code after an interrupt (128 + SIGINT), as shells report it.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Takes over SIGINT and SIGTERM from now on; `stopping` is printed on the first one.
pub fn install(stopping: &'static str) -> anyhow::Result<()> {
    static INSTALLED: AtomicBool = AtomicBool::new(false);
    if INSTALLED.swap(true, Ordering::SeqCst) {
        return Ok(());
    }
    ctrlc::set_handler(move || {
        if aptc_runtime::apply::interrupted() {
            eprintln!("interrupted again: exiting now");
            std::process::exit(i32::from(EXIT_INTERRUPTED));
        }
        tracing::info!("signal received: stopping");
        eprintln!("{stopping} (again to exit at once)");
        aptc_runtime::apply::interrupt();
    })
    .map_err(|e| anyhow::anyhow!("installing the signal handler: {e}"))
}

/// Whether a signal asked to stop.
pub fn stopping() -> bool {
    aptc_runtime::apply::interrupted()
}
