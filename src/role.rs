//! Multi-call dispatch: one binary, several programs.
//!
//! The program is chosen by the base name of `argv[0]` (`cblockd`, `warden`,
//! `cblock-runtime`, and `fetch` inside the forge image; anything else acts as
//! `cblock`). Under the `cblock` name a first word of `daemon`, `warden` or
//! `runtime` selects that program, so a single copied file works without
//! symlinks. The internal roles, the per-container supervisor, the init
//! inside a container and the build process, are first words that begin with
//! an underscore and are not meant to be typed.
//!
//! Exit status: 0 on success, 1 on failure, 2 on a usage error. Commands that
//! wait for a container return its exit status instead.

use std::ffi::OsString;
use std::process::ExitCode;

use argh::FromArgs;

/// Exit status of a usage error, as with most Unix tools.
pub const EXIT_USAGE: u8 = 2;
/// Exit status of a failed command.
pub const EXIT_FAILURE: u8 = 1;

/// The programs this binary can act as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Daemon,
    Warden,
    Runtime,
    Supervisor,
    Init,
    Build,
    Fetch,
}

impl Role {
    /// Returns the name the role reports in messages.
    pub fn program_name(self) -> &'static str {
        match self {
            Role::Client => "cblock",
            Role::Daemon => "cblockd",
            Role::Warden => "warden",
            Role::Runtime => "cblock-runtime",
            Role::Supervisor => "cblock-supervisor",
            Role::Init => "cblock-init",
            Role::Build => "cblock-build",
            Role::Fetch => "fetch",
        }
    }
}

/// Picks the role from `argv[0]` and the first word, and returns it with the
/// arguments that belong to it.
pub fn select(argv: &[String]) -> (Role, &[String]) {
    let base = argv
        .first()
        .map(|arg0| arg0.rsplit('/').next().unwrap_or(arg0))
        .unwrap_or("cblock");
    let rest = argv.get(1..).unwrap_or(&[]);

    match base {
        "cblockd" => return (Role::Daemon, rest),
        "warden" => return (Role::Warden, rest),
        "cblock-runtime" => return (Role::Runtime, rest),
        "fetch" => return (Role::Fetch, rest),
        _ => {}
    }

    let role = match rest.first().map(String::as_str) {
        Some("daemon") => Role::Daemon,
        Some("warden") => Role::Warden,
        Some("runtime") => Role::Runtime,
        Some("_supervisor") => Role::Supervisor,
        Some("_init") => Role::Init,
        Some("_build") => Role::Build,
        _ => return (Role::Client, rest),
    };
    (role, &rest[1..])
}

/// Runs the program selected by `argv` and returns its exit status.
pub fn main(argv: Vec<OsString>) -> ExitCode {
    let argv = match utf8_args(argv) {
        Ok(argv) => argv,
        Err(bad) => {
            eprintln!(
                "cblock: argument {:?} is not valid UTF-8; pass paths and names as UTF-8",
                bad
            );
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (role, args) = select(&argv);

    let result = match role {
        Role::Client => crate::client::main(args),
        Role::Daemon => crate::daemon::main(args),
        Role::Warden => crate::warden::main(args),
        Role::Runtime => crate::runtime::cli::main(args),
        Role::Supervisor => crate::console::supervisor_main(args),
        Role::Init => crate::runtime::init_main(args),
        Role::Build => crate::build::job::main(args),
        Role::Fetch => crate::forge::fetch::main(args),
    };

    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("{}: {}", role.program_name(), err);
            // An argument that parsed but is invalid (a bad -V value, say)
            // is a usage error too.
            match err {
                crate::Error::Client(crate::client::Error::Usage(_)) => ExitCode::from(EXIT_USAGE),
                _ => ExitCode::from(EXIT_FAILURE),
            }
        }
    }
}

fn utf8_args(argv: Vec<OsString>) -> Result<Vec<String>, OsString> {
    argv.into_iter().map(OsString::into_string).collect()
}

/// Parses `args` as the arguments of `command` with argh.
///
/// `--help` prints to standard output and returns exit status 0; a usage
/// error prints to standard error and returns exit status 2. The caller
/// returns the `Err` status as is.
pub fn parse_args<T: FromArgs>(command: &[&str], args: &[String]) -> Result<T, ExitCode> {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    T::from_args(command, &args).map_err(|early| {
        if early.status.is_ok() {
            print!("{}", early.output);
            ExitCode::SUCCESS
        } else {
            eprint!("{}", early.output);
            if !early.output.ends_with('\n') {
                eprintln!();
            }
            ExitCode::from(EXIT_USAGE)
        }
    })
}

/// Returns `Ok(code)` from a role's main function when argument parsing
/// stopped early (help or a usage error), otherwise the parsed arguments.
#[macro_export]
macro_rules! parse_or_exit {
    ($ty:ty, $command:expr, $args:expr) => {
        match $crate::role::parse_args::<$ty>($command, $args) {
            Ok(parsed) => parsed,
            Err(code) => return Ok(code),
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn select_by_program_name() {
        let cases = [
            ("/usr/sbin/cblockd", Role::Daemon),
            ("warden", Role::Warden),
            ("/usr/bin/cblock-runtime", Role::Runtime),
            ("/usr/bin/cblock", Role::Client),
            ("./target/release/cblock", Role::Client),
        ];
        for (arg0, expected) in cases {
            let args = argv(&[arg0, "x"]);
            let (role, rest) = select(&args);
            assert_eq!(role, expected, "argv[0] {arg0}");
            assert_eq!(rest, &args[1..], "arguments of {arg0}");
        }
    }

    #[test]
    fn select_by_first_word() {
        let args = argv(&["cblock", "daemon", "-d", "/tmp/x"]);
        assert_eq!(select(&args), (Role::Daemon, &args[2..]));
        let args = argv(&["cblock", "runtime", "state", "c1"]);
        assert_eq!(select(&args), (Role::Runtime, &args[2..]));
        let args = argv(&["cblock", "warden", "-f", "w.yaml"]);
        assert_eq!(select(&args), (Role::Warden, &args[2..]));
        let args = argv(&["cblock", "images"]);
        assert_eq!(select(&args), (Role::Client, &args[1..]));
    }

    #[test]
    fn first_word_ignored_under_other_names() {
        // `cblockd daemon` is the daemon given a stray word, not a nested role.
        let args = argv(&["cblockd", "runtime"]);
        assert_eq!(select(&args), (Role::Daemon, &args[1..]));
    }
}
