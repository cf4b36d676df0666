//! `cblock`: the command line people type. Each command is one file here; a
//! command connects to cblockd only when it needs the daemon, so `--help` and
//! `build --no-exec` work without one.

use std::path::PathBuf;
use std::process::ExitCode;

use argh::FromArgs;

mod build;
mod console;
mod exec;
mod forge;
mod image;
mod images;
mod instances;
mod launch;
mod logs;
mod network;
mod parse;
mod rmi;
mod tag;

pub use launch::launch_detached;

/// Environment variable that names the daemon's socket when `-U` is not given.
pub const SOCKET_ENV: &str = "CBLOCK_SOCKET";
/// Socket path used when neither `-U` nor `$CBLOCK_SOCKET` is set.
pub const DEFAULT_SOCKET: &str = "/var/run/cblock.sock";

/// Errors of the client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    /// An invalid argument: the command exits with status 2.
    #[error("{0}")]
    Usage(String),
    /// A failure that is not the caller's usage: exit status 1.
    #[error("{0}")]
    Failed(String),
    #[error(transparent)]
    Protocol(#[from] crate::daemon::protocol::ProtocolError),
}

#[derive(FromArgs)]
/// Build images from Cblockfiles and run them as containers.
struct Cli {
    /// path of cblockd's socket (default: $CBLOCK_SOCKET, else /var/run/cblock.sock)
    #[argh(option, short = 'U', long = "unix-sock")]
    unix_sock: Option<PathBuf>,

    #[argh(subcommand)]
    command: Command,
}

#[derive(FromArgs)]
#[argh(subcommand)]
#[allow(clippy::large_enum_variant)]
enum Command {
    Build(build::Args),
    Console(console::Args),
    Exec(exec::Args),
    Forge(forge::Args),
    Image(image::Args),
    Images(images::Args),
    Instances(instances::Args),
    Launch(launch::Args),
    Logs(logs::Args),
    Network(network::Args),
    Parse(parse::Args),
    Rmi(rmi::Args),
    Tag(tag::Args),
}

/// Settings every command shares.
pub struct Globals {
    /// The daemon's socket, chosen from `-U`, `$CBLOCK_SOCKET` or the default.
    pub socket: PathBuf,
}

/// Runs the client role with the arguments after the program name.
pub fn main(args: &[String]) -> crate::Result<ExitCode> {
    let cli = crate::parse_or_exit!(Cli, &["cblock"], args);
    let socket = cli
        .unix_sock
        .or_else(|| std::env::var_os(SOCKET_ENV).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
    let globals = Globals { socket };

    match cli.command {
        Command::Build(args) => build::run(&globals, args),
        Command::Console(args) => console::run(&globals, args),
        Command::Exec(args) => exec::run(&globals, args),
        Command::Forge(args) => forge::run(&globals, args),
        Command::Image(args) => image::run(&globals, args),
        Command::Images(args) => images::run(&globals, args),
        Command::Instances(args) => instances::run(&globals, args),
        Command::Launch(args) => launch::run(&globals, args),
        Command::Logs(args) => logs::run(&globals, args),
        Command::Network(args) => network::run(&globals, args),
        Command::Parse(args) => parse::run(&globals, args),
        Command::Rmi(args) => rmi::run(&globals, args),
        Command::Tag(args) => tag::run(&globals, args),
    }
}
