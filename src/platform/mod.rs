//! Everything that differs between operating systems. Each supported OS has
//! one module, selected at compile time; the rest of the crate calls only
//! what this module re-exports.

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(target_os = "freebsd")]
pub use freebsd::*;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;
