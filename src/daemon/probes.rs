//! USDT probes of the `cblockd` provider, with the original's names and
//! arguments: `cblock_create(id)`, `cblock_destroy(id, status)`,
//! `cblock_cleanup(id, status, type)`, `cblock_console_attach(id)` and
//! `cblock_console_detach(id)`.

/// An instance was created.
pub fn create(id: &str) {
    let _ = id;
}

/// An instance's payload ended with `status`.
pub fn destroy(id: &str, status: i32) {
    let _ = (id, status);
}

/// The cleanup of an instance of `kind` (`regular` or `build`) finished.
pub fn cleanup(id: &str, status: i32, kind: &str) {
    let _ = (id, status, kind);
}

/// A console attached to an instance.
pub fn console_attach(id: &str) {
    let _ = id;
}

/// A console detached from an instance.
pub fn console_detach(id: &str) {
    let _ = id;
}
