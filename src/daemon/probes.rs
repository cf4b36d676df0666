//! USDT probes of the `cblockd` provider (defined in `probes.d`), with the
//! original's names and arguments: `cblock_create(id)`,
//! `cblock_destroy(id, status)`, `cblock_cleanup(id, status, type)`,
//! `cblock_console_attach(id)` and `cblock_console_detach(id)`, and the
//! build step probes `cblock_build_step_start(build, step, instruction)`
//! and `cblock_build_step_done(build, step, status)`.
//!
//! The usdt crate emits SystemTap v3 notes (`.note.stapsdt`) on x86-64
//! Linux, which bpftrace lists as `usdt:BINARY:cblockd:PROBE`, and DTrace
//! probes on FreeBSD. A disabled probe costs a test of its semaphore; the
//! arguments are only evaluated when a tracer is attached.

usdt::dtrace_provider!("src/daemon/probes.d");

/// Registers the probes with the kernel where the platform needs it
/// (DTrace on FreeBSD); on Linux the notes in the binary are enough.
pub fn register() {
    if let Err(err) = usdt::register_probes() {
        crate::log_warn!(None, "failed to register the USDT probes: {err}");
    }
}

/// Fires `cblock_create`: an instance was created.
pub fn create(id: &str) {
    cblockd::cblock_create!(|| id);
}

/// Fires `cblock_destroy`: an instance's payload ended with `status`.
pub fn destroy(id: &str, status: i32) {
    cblockd::cblock_destroy!(|| (id, status));
}

/// Fires `cblock_cleanup`: the cleanup of an instance of `kind`
/// (`regular` or `build`) finished with `status`.
pub fn cleanup(id: &str, status: i32, kind: &str) {
    cblockd::cblock_cleanup!(|| (id, status, kind));
}

/// Fires `cblock_console_attach`: a console attached to an instance.
pub fn console_attach(id: &str) {
    cblockd::cblock_console_attach!(|| id);
}

/// Fires `cblock_console_detach`: a console detached from an instance.
pub fn console_detach(id: &str) {
    cblockd::cblock_console_detach!(|| id);
}

/// Fires `cblock_build_step_start`: build `build` starts step `step`.
pub fn build_step_start(build: &str, step: i32, instruction: &str) {
    cblockd::cblock_build_step_start!(|| (build, step, instruction));
}

/// Fires `cblock_build_step_done`: step `step` of build `build` ended with
/// `status` (0, or the exit status of a failed RUN command, or 1 for any
/// other failure).
pub fn build_step_done(build: &str, step: i32, status: i32) {
    cblockd::cblock_build_step_done!(|| (build, step, status));
}
