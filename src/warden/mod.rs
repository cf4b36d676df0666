//! warden: launches the containers declared in a file at boot.
//!
//! The file (the manifest, see [`manifest`]) lists cellblocks. Each becomes
//! one `cblock launch --no-attach`, run through the client code in this
//! process, so warden needs only cblockd's socket and no `cblock` on the
//! PATH. A
//! block that fails is reported and the next one is still launched: one
//! broken container should not keep the others down at boot.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

pub mod manifest;

use manifest::{shell_quote, Manifest};

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: manifest is not valid: {message}; fix the YAML there", path.display())]
    Yaml {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error(
        "no cellblocks defined in {}; list the containers under `cellblocks:`, each with \
         an `image:`",
        path.display()
    )]
    Empty { path: PathBuf },
}

#[derive(FromArgs)]
/// Launch the containers listed in a manifest file, as at boot.
struct Cli {
    /// manifest of cellblocks to launch (default: /etc/cblocks/cellblocks.yaml
    /// on Linux, /usr/local/etc/cellblocks.yaml on FreeBSD)
    #[argh(option, short = 'p', long = "manifest-path")]
    manifest_path: Option<PathBuf>,

    /// path of cblockd's socket (default: $CBLOCK_SOCKET, else
    /// /var/run/cblock.sock)
    #[argh(option, short = 'U', long = "unix-sock")]
    unix_sock: Option<PathBuf>,

    /// print each launch as a shell command line instead of running it
    #[argh(switch, short = 'n', long = "dry-run")]
    dry_run: bool,
}

/// Runs the warden role (`warden`, `cblock warden`).
pub fn main(args: &[String]) -> crate::Result<ExitCode> {
    let cli = crate::parse_or_exit!(Cli, &["warden"], args);
    let path = cli
        .manifest_path
        .unwrap_or_else(|| PathBuf::from(crate::platform::DEFAULT_MANIFEST));
    let manifest = Manifest::load(&path)?;

    if cli.dry_run {
        return Ok(dry_run(&manifest, cli.unix_sock.as_deref()));
    }

    let socket = cli
        .unix_sock
        .or_else(|| std::env::var_os(crate::client::SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(crate::client::DEFAULT_SOCKET));
    let globals = crate::client::Globals { socket };
    let mut failed = 0;
    for block in &manifest.blocks {
        let launched = match block.unsupported() {
            Some(why) => Err(why),
            None => crate::client::launch_detached(&globals, &block.launch_args()[1..])
                .map_err(|err| format!("block {} ({}): {err}", block.index, block.image)),
        };
        match launched {
            Ok(id) => println!("warden: launched {}: instance {id}", block.image),
            Err(why) => {
                eprintln!("warden: {why}");
                failed += 1;
            }
        }
    }
    if failed > 0 {
        eprintln!(
            "warden: {failed} of {} cellblocks failed to launch (cblockd socket {})",
            manifest.blocks.len(),
            globals.socket.display()
        );
        return Ok(ExitCode::from(crate::role::EXIT_FAILURE));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints each block's launch as a shell command line; a block that cannot
/// be launched here is reported and makes the exit status 1.
fn dry_run(manifest: &Manifest, socket: Option<&std::path::Path>) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for block in &manifest.blocks {
        if let Some(why) = block.unsupported() {
            eprintln!("warden: {why}");
            code = ExitCode::from(crate::role::EXIT_FAILURE);
            continue;
        }
        let mut words = vec!["cblock".to_string()];
        if let Some(socket) = socket {
            words.extend(["-U".into(), socket.display().to_string()]);
        }
        words.extend(block.launch_args());
        let line: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
        println!("{}", line.join(" "));
    }
    code
}
