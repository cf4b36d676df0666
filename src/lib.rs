//! cblocks: a container build and runtime system in one static binary.
//!
//! The module tree follows the system's parts. The parser of the image
//! language is `cblockfile`; `build` turns a parsed file into an image held by
//! `image` on layers kept by a `storage` driver; `runtime` starts containers
//! from OCI runtime configurations (`oci`), each watched by a supervisor that
//! holds its `console`; `daemon` owns all of that behind a UNIX socket that
//! `client` talks to; `warden` launches the containers of a file at boot;
//! `network` sets up host, NAT and bridge networking; `fim` writes and checks
//! file-integrity specifications. Everything that differs between Linux and
//! FreeBSD sits in `platform`.

pub mod build;
pub mod cblockfile;
pub mod client;
pub mod console;
pub mod daemon;
pub mod error;
pub mod fim;
pub mod forge;
pub mod image;
pub mod network;
pub mod oci;
pub mod platform;
pub mod role;
pub mod runtime;
pub mod storage;
pub mod warden;

pub use error::{Error, Result};
