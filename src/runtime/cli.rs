//! `cblock-runtime`: the OCI runtime command line, following runc's.
//!
//! Podman, containerd and the OCI validation suite call a runtime with
//! global options before the command, for example
//! `cblock-runtime --root R --log L --log-format json create --bundle B
//! --pid-file P ID`. Errors go to standard error and, with `--log`, to the
//! log file as text or as one JSON object per line (`{"level", "msg",
//! "time"}`), which is where conmon looks for them.

use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use argh::FromArgs;

use super::{
    become_subreaper, engine, example_spec, list, parse_signal, write_config, ConsoleMode,
    Container, ContainerConfig, Error, ExecConfig,
};
use crate::oci::runtime_spec::{ConsoleSize, Process, Status};

/// OCI container runtime with runc's command line.
#[derive(FromArgs, Debug)]
struct Args {
    /// directory of the containers' state (default /run/cblock-runtime)
    #[argh(option)]
    root: Option<String>,
    /// file that errors and warnings are appended to
    #[argh(option)]
    log: Option<String>,
    /// format of the --log file: text or json (default text)
    #[argh(option, default = "String::from(\"text\")")]
    log_format: String,
    /// manage cgroups through systemd (not supported: use cgroupfs paths)
    #[argh(switch)]
    systemd_cgroup: bool,
    /// accepted for compatibility; debug output is not implemented
    #[argh(switch)]
    debug: bool,
    /// rootless mode: auto or false (running without root is not supported)
    #[argh(option)]
    rootless: Option<String>,
    /// print the version and exit
    #[argh(switch, short = 'v')]
    version: bool,
    #[argh(subcommand)]
    command: Option<Command>,
}

#[derive(FromArgs, Debug)]
#[argh(subcommand)]
enum Command {
    Create(CreateArgs),
    Start(StartArgs),
    State(StateArgs),
    Kill(KillArgs),
    Delete(DeleteArgs),
    Run(RunArgs),
    Exec(ExecArgs),
    List(ListArgs),
    Ps(PsArgs),
    Spec(SpecArgs),
    Features(FeaturesArgs),
}

/// Create a container from a bundle; its program starts with `start`.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "create")]
struct CreateArgs {
    /// bundle directory holding config.json (default: current directory)
    #[argh(option, short = 'b', default = "String::from(\".\")")]
    bundle: String,
    /// UNIX socket that receives the terminal's master descriptor
    #[argh(option)]
    console_socket: Option<String>,
    /// file to write the container's pid to
    #[argh(option)]
    pid_file: Option<String>,
    /// move the root over / and chroot instead of pivot_root (for ramdisks)
    #[argh(switch)]
    no_pivot: bool,
    /// accepted for compatibility: no session keyring is created anyway
    #[argh(switch)]
    no_new_keyring: bool,
    /// number of descriptors after the standard streams to pass on
    #[argh(option, default = "0")]
    preserve_fds: u32,
    /// container id
    #[argh(positional)]
    id: String,
}

/// Start the program of a created container.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "start")]
struct StartArgs {
    /// container id
    #[argh(positional)]
    id: String,
}

/// Print the state of a container as JSON.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "state")]
struct StateArgs {
    /// container id
    #[argh(positional)]
    id: String,
}

/// Send a signal (default TERM) to a container's process.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "kill")]
struct KillArgs {
    /// signal every process in the container's cgroup
    #[argh(switch, short = 'a')]
    all: bool,
    /// container id
    #[argh(positional)]
    id: String,
    /// signal number or name, such as 9 or KILL
    #[argh(positional)]
    signal: Option<String>,
}

/// Delete a container and everything the runtime made for it.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "delete")]
struct DeleteArgs {
    /// kill a running container first
    #[argh(switch, short = 'f')]
    force: bool,
    /// container id
    #[argh(positional)]
    id: String,
}

/// Create and start a container, wait for it and delete it.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "run")]
struct RunArgs {
    /// bundle directory holding config.json (default: current directory)
    #[argh(option, short = 'b', default = "String::from(\".\")")]
    bundle: String,
    /// UNIX socket that receives the terminal's master descriptor
    #[argh(option)]
    console_socket: Option<String>,
    /// file to write the container's pid to
    #[argh(option)]
    pid_file: Option<String>,
    /// return once the container runs instead of waiting for it
    #[argh(switch, short = 'd')]
    detach: bool,
    /// keep the container's state after it exits
    #[argh(switch)]
    keep: bool,
    /// move the root over / and chroot instead of pivot_root (for ramdisks)
    #[argh(switch)]
    no_pivot: bool,
    /// accepted for compatibility: no session keyring is created anyway
    #[argh(switch)]
    no_new_keyring: bool,
    /// number of descriptors after the standard streams to pass on
    #[argh(option, default = "0")]
    preserve_fds: u32,
    /// container id
    #[argh(positional)]
    id: String,
}

/// Run another process in a running container.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "exec")]
struct ExecArgs {
    /// JSON file with the process (config.json's process object)
    #[argh(option, short = 'p')]
    process: Option<String>,
    /// give the process a terminal
    #[argh(switch, short = 't')]
    tty: bool,
    /// UNIX socket that receives the terminal's master descriptor
    #[argh(option)]
    console_socket: Option<String>,
    /// return once the process runs instead of waiting for it
    #[argh(switch, short = 'd')]
    detach: bool,
    /// file to write the process's pid to
    #[argh(option)]
    pid_file: Option<String>,
    /// working directory in the container
    #[argh(option)]
    cwd: Option<String>,
    /// environment entry NAME=value, repeatable
    #[argh(option, short = 'e')]
    env: Vec<String>,
    /// user as UID[:GID]
    #[argh(option, short = 'u')]
    user: Option<String>,
    /// additional group id, repeatable
    #[argh(option, short = 'g')]
    additional_gids: Vec<u32>,
    /// capability to add, repeatable
    #[argh(option, short = 'c')]
    cap: Vec<String>,
    /// set no_new_privs for the process
    #[argh(switch)]
    no_new_privs: bool,
    /// number of descriptors after the standard streams to pass on
    #[argh(option, default = "0")]
    preserve_fds: u32,
    /// SELinux label (not supported)
    #[argh(option)]
    process_label: Option<String>,
    /// apparmor profile (not supported)
    #[argh(option)]
    apparmor: Option<String>,
    /// container id
    #[argh(positional)]
    id: String,
    /// program and arguments, when --process is not given
    #[argh(positional, greedy)]
    command: Vec<String>,
}

/// List the containers.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "list")]
struct ListArgs {
    /// output format: table or json
    #[argh(option, short = 'f', default = "String::from(\"table\")")]
    format: String,
    /// print only the ids
    #[argh(switch, short = 'q')]
    quiet: bool,
}

/// List the processes in a container.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "ps")]
struct PsArgs {
    /// output format: table or json (the pids)
    #[argh(option, short = 'f', default = "String::from(\"table\")")]
    format: String,
    /// container id
    #[argh(positional)]
    id: String,
    /// options for ps(1) in table format (default -ef)
    #[argh(positional, greedy)]
    ps_options: Vec<String>,
}

/// Write an example config.json.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "spec")]
struct SpecArgs {
    /// directory to write config.json to (default: current directory)
    #[argh(option, short = 'b', default = "String::from(\".\")")]
    bundle: String,
    /// write a configuration for rootless containers (not supported)
    #[argh(switch)]
    rootless: bool,
}

/// Print the features this runtime supports as JSON.
#[derive(FromArgs, Debug)]
#[argh(subcommand, name = "features")]
struct FeaturesArgs {}

/// Destination of error reports besides standard error.
struct Log {
    file: Option<PathBuf>,
    json: bool,
}

impl Log {
    fn error(&self, message: &str) {
        let Some(path) = &self.file else {
            return;
        };
        let line = if self.json {
            serde_json::json!({
                "level": "error",
                "msg": message,
                "time": super::state::now_rfc3339(),
            })
            .to_string()
        } else {
            format!("{} error: {message}", super::state::now_rfc3339())
        };
        let file = fs::OpenOptions::new().create(true).append(true).open(path);
        if let Ok(mut file) = file {
            let _ = writeln!(file, "{line}");
        }
    }
}

/// Runs the OCI runtime role (`cblock-runtime`, `cblock runtime`).
pub fn main(args: &[String]) -> crate::Result<ExitCode> {
    if args.first().map(String::as_str) == Some("_setup") {
        return Ok(engine::setup_main(&args[1..]));
    }
    let args = crate::parse_or_exit!(Args, &["cblock-runtime"], args);
    let log = Log {
        file: args.log.as_ref().map(PathBuf::from),
        json: args.log_format == "json",
    };
    let result = run(args);
    if let Err(err) = &result {
        log.error(&err.to_string());
    }
    result
}

fn run(args: Args) -> crate::Result<ExitCode> {
    if args.log_format != "text" && args.log_format != "json" {
        return Err(usage(format!(
            "invalid --log-format {:?}; use text or json",
            args.log_format
        )));
    }
    if args.systemd_cgroup {
        return Err(usage(
            "--systemd-cgroup is not supported: this runtime manages cgroupfs paths only; \
             with podman use --cgroup-manager cgroupfs"
                .into(),
        ));
    }
    if args
        .rootless
        .as_deref()
        .is_some_and(|r| r != "false" && r != "auto")
    {
        return Err(usage(
            "--rootless true is not supported; run the runtime as root".into(),
        ));
    }
    // Debug output and session keyrings do not exist here; the options are
    // accepted because callers pass them routinely.
    let _ = args.debug;
    let root = PathBuf::from(args.root.unwrap_or_default());

    if args.version {
        println!("cblock-runtime version {}", env!("CARGO_PKG_VERSION"));
        println!("spec: {}", crate::oci::runtime_spec::OCI_VERSION);
        return Ok(ExitCode::SUCCESS);
    }
    let Some(command) = args.command else {
        return Err(usage(
            "a command is missing; run cblock-runtime --help for the list".into(),
        ));
    };
    match command {
        Command::Create(a) => create(&root, a),
        Command::Start(a) => {
            Container::load(&root, &a.id)?.start()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::State(a) => state(&root, &a.id),
        Command::Kill(a) => {
            let signal = parse_signal(a.signal.as_deref().unwrap_or("TERM"))?;
            Container::load(&root, &a.id)?.kill(signal, a.all)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete(a) => delete(&root, &a.id, a.force),
        Command::Run(a) => run_container(&root, a),
        Command::Exec(a) => exec(&root, a),
        Command::List(a) => list_containers(&root, a),
        Command::Ps(a) => ps(&root, a),
        Command::Spec(a) => spec(a),
        Command::Features(_) => features(),
    }
}

fn usage(message: String) -> crate::Error {
    crate::Error::Runtime(Error::Usage(message))
}

fn console_mode(console_socket: Option<String>) -> ConsoleMode {
    match console_socket {
        Some(path) => ConsoleMode::Socket(PathBuf::from(path)),
        None => ConsoleMode::Inherit,
    }
}

fn create(root: &Path, a: CreateArgs) -> crate::Result<ExitCode> {
    let _ = a.no_new_keyring;
    Container::create(&ContainerConfig {
        id: a.id,
        bundle: PathBuf::from(a.bundle),
        root_dir: root.to_path_buf(),
        console: console_mode(a.console_socket),
        pid_file: a.pid_file.map(PathBuf::from),
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
        runtime_exe: None,
        stdio: None,
        console_size: None,
        start_at_once: false,
    })?;
    Ok(ExitCode::SUCCESS)
}

fn delete(root: &Path, id: &str, force: bool) -> crate::Result<ExitCode> {
    match Container::load(root, id) {
        Ok(container) => container.delete(force)?,
        // runc treats deleting a missing container with --force as done.
        Err(Error::NotFound { .. }) if force => {}
        Err(err) => return Err(err.into()),
    }
    Ok(ExitCode::SUCCESS)
}

fn state(root: &Path, id: &str) -> crate::Result<ExitCode> {
    let container = Container::load(root, id)?;
    let state = container.state();
    let mut value = serde_json::to_value(&state).map_err(|e| Error::Setup(e.to_string()))?;
    if let Some(object) = value.as_object_mut() {
        object.insert("rootfs".into(), container.record.rootfs.clone().into());
        object.insert("created".into(), container.record.created.clone().into());
        object.insert("owner".into(), "".into());
        object.entry("pid").or_insert(0.into());
    }
    let text = serde_json::to_string_pretty(&value).map_err(|e| Error::Setup(e.to_string()))?;
    println!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Returns whether standard input is a terminal.
fn stdin_is_terminal() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(0) == 1 }
}

fn run_container(root: &Path, a: RunArgs) -> crate::Result<ExitCode> {
    let _ = a.no_new_keyring;
    let (bundle, spec) = super::load_bundle(Path::new(&a.bundle))?;
    let terminal = spec.process.as_ref().is_some_and(|p| p.terminal);
    let console = match (a.console_socket, terminal) {
        (Some(path), _) => ConsoleMode::Socket(PathBuf::from(path)),
        (None, true) if !a.detach => ConsoleMode::Receive,
        (None, true) => {
            return Err(usage(
                "run --detach with process.terminal needs --console-socket to hand the \
                 terminal to"
                    .into(),
            ))
        }
        (None, false) => ConsoleMode::Inherit,
    };
    if !a.detach {
        become_subreaper()?;
    }
    // A terminal this process proxies starts with the size of its own.
    let console_size = match console {
        ConsoleMode::Receive => crate::platform::pty::window_size(io::stdin().as_fd())
            .ok()
            .filter(|(rows, cols)| *rows > 0 && *cols > 0)
            .map(|(rows, cols)| ConsoleSize {
                height: rows,
                width: cols,
            }),
        _ => None,
    };
    let config = ContainerConfig {
        id: a.id.clone(),
        bundle: PathBuf::from(&a.bundle),
        root_dir: root.to_path_buf(),
        console,
        pid_file: a.pid_file.map(PathBuf::from),
        preserve_fds: a.preserve_fds,
        no_pivot: a.no_pivot,
        runtime_exe: None,
        stdio: None,
        console_size,
        start_at_once: true,
    };
    let mut container = Container::create_from(&config, bundle, spec)?;
    let master = container.take_console();
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }

    let pid = container.pid().unwrap_or_default();
    let resize_target = master.as_ref().and_then(|fd| fd.try_clone().ok());
    forward_signals(pid, resize_target);
    let proxy = master.map(proxy_terminal);
    let code = container.wait();
    if let Some(proxy) = proxy {
        proxy.finish();
    }
    if !a.keep {
        container.delete(true)?;
    }
    Ok(ExitCode::from(code? as u8))
}

fn exec(root: &Path, a: ExecArgs) -> crate::Result<ExitCode> {
    if a.process_label.is_some() || a.apparmor.is_some() {
        return Err(usage(
            "--process-label and --apparmor are not supported: this runtime has no SELinux or \
             AppArmor support"
                .into(),
        ));
    }
    let container = Container::load(root, &a.id)?;
    let process = exec_process(&container, &a)?;

    let console = match (a.console_socket, process.terminal) {
        (Some(path), _) => ConsoleMode::Socket(PathBuf::from(path)),
        (None, true) if !a.detach => ConsoleMode::Receive,
        (None, true) => {
            return Err(usage(
                "exec --detach --tty needs --console-socket to hand the terminal to".into(),
            ))
        }
        (None, false) => ConsoleMode::Inherit,
    };
    if !a.detach {
        become_subreaper()?;
    }

    let (pid, master) = container.exec(&ExecConfig {
        process,
        console,
        pid_file: a.pid_file.map(PathBuf::from),
        preserve_fds: a.preserve_fds,
        runtime_exe: None,
        stdio: None,
    })?;
    if a.detach {
        return Ok(ExitCode::SUCCESS);
    }

    let resize_target = master.as_ref().and_then(|fd| fd.try_clone().ok());
    forward_signals(pid, resize_target);
    let proxy = master.map(proxy_terminal);
    let code = wait_pid(pid);
    if let Some(proxy) = proxy {
        proxy.finish();
    }
    Ok(ExitCode::from(code? as u8))
}

/// Builds the process for `exec` from `--process` or from the command line,
/// starting from the container's own process settings.
fn exec_process(container: &Container, a: &ExecArgs) -> Result<Process, Error> {
    if let Some(path) = &a.process {
        let text = fs::read_to_string(path).map_err(|e| Error::Io {
            context: format!("reading process file {path}"),
            source: e,
        })?;
        let mut process: Process = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("process file {path}: {e}")))?;
        if a.tty {
            process.terminal = true;
        }
        return Ok(process);
    }
    if a.command.is_empty() {
        return Err(Error::Config(
            "exec needs a command after the container id, or --process FILE".into(),
        ));
    }

    let mut process = container.spec().process.clone().unwrap_or_default();
    process.args = a.command.clone();
    process.terminal = a.tty;
    process.console_size = None;
    if let Some(cwd) = &a.cwd {
        process.cwd = cwd.clone();
    }
    for entry in &a.env {
        let name = entry.split('=').next().unwrap_or_default();
        process.env.retain(|e| e.split('=').next() != Some(name));
        process.env.push(entry.clone());
    }

    if let Some(user) = &a.user {
        let (uid, gid) = user.split_once(':').unwrap_or((user, "0"));
        let parse = |text: &str| {
            text.parse::<u32>().map_err(|_| {
                Error::Config(format!(
                    "invalid --user {user:?}; give UID or UID:GID as numbers"
                ))
            })
        };
        process.user.uid = parse(uid)?;
        process.user.gid = parse(gid)?;
    }
    if !a.additional_gids.is_empty() {
        process.user.additional_gids = a.additional_gids.clone();
    }

    if !a.cap.is_empty() {
        let capabilities = process.capabilities.get_or_insert_with(Default::default);
        for cap in &a.cap {
            for set in [
                &mut capabilities.bounding,
                &mut capabilities.effective,
                &mut capabilities.permitted,
            ] {
                if !set.contains(cap) {
                    set.push(cap.clone());
                }
            }
        }
    }
    if a.no_new_privs {
        process.no_new_privileges = true;
    }
    Ok(process)
}

fn wait_pid(pid: i32) -> Result<i32, Error> {
    let pid = nix::unistd::Pid::from_raw(pid);
    loop {
        match nix::sys::wait::waitpid(pid, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(nix::sys::wait::WaitStatus::Signaled(_, signal, _)) => {
                return Ok(128 + signal as i32)
            }
            Ok(_) | Err(nix::Error::EINTR) => continue,
            Err(e) => {
                return Err(Error::Io {
                    context: format!("waiting for process {pid}"),
                    source: e.into(),
                })
            }
        }
    }
}

/// Forwards the usual termination and user signals to the container's
/// process. SIGWINCH instead copies this terminal's size to the
/// container's terminal `resize`, when this process proxies one, and the
/// kernel then signals the container's foreground processes.
fn forward_signals(pid: i32, resize: Option<OwnedFd>) {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    for signal in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
    ] {
        set.add(signal);
    }
    if nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None).is_err() {
        return;
    }
    let _ = std::thread::Builder::new()
        .name("signal-forwarder".into())
        .spawn(move || loop {
            let Ok(signal) = set.wait() else { continue };
            match (&resize, signal) {
                (Some(master), Signal::SIGWINCH) => {
                    if let Ok((rows, cols)) = crate::platform::pty::window_size(io::stdin().as_fd())
                    {
                        let _ =
                            crate::platform::pty::set_window_size(master.as_raw_fd(), rows, cols);
                    }
                }
                _ => {
                    let _ = engine::signal(pid, signal as i32);
                }
            }
        });
}

/// Copies between this process's standard streams and a container's
/// terminal, with the local terminal in raw mode.
struct TerminalProxy {
    saved: Option<nix::sys::termios::Termios>,
    output: std::thread::JoinHandle<()>,
}

fn proxy_terminal(master: OwnedFd) -> TerminalProxy {
    use nix::sys::termios;
    let saved = if stdin_is_terminal() {
        let stdin = io::stdin();
        let saved = termios::tcgetattr(&stdin).ok();
        if let Some(original) = &saved {
            let mut raw = original.clone();
            termios::cfmakeraw(&mut raw);
            let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw);
        }
        saved
    } else {
        None
    };

    let mut reader = fs::File::from(master);
    if let Ok(mut writer) = reader.try_clone() {
        let _ = std::thread::Builder::new()
            .name("terminal-input".into())
            .spawn(move || {
                let mut buffer = [0u8; 4096];
                let mut stdin = io::stdin();
                while let Ok(n) = stdin.read(&mut buffer) {
                    if n == 0 || writer.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            });
    }
    let output = std::thread::Builder::new()
        .name("terminal-output".into())
        .spawn(move || {
            let mut buffer = [0u8; 4096];
            let mut stdout = io::stdout();
            // Reading fails with EIO once the container's side is closed.
            while let Ok(n) = reader.read(&mut buffer) {
                if n == 0 || stdout.write_all(&buffer[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
        })
        .expect("spawning the terminal output thread");
    TerminalProxy { saved, output }
}

impl TerminalProxy {
    fn finish(self) {
        let _ = self.output.join();
        if let Some(saved) = &self.saved {
            let _ = nix::sys::termios::tcsetattr(
                io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

fn list_containers(root: &Path, a: ListArgs) -> crate::Result<ExitCode> {
    let containers = list(root)?;
    if a.quiet {
        for container in &containers {
            println!("{}", container.id());
        }
        return Ok(ExitCode::SUCCESS);
    }
    match a.format.as_str() {
        "json" => {
            let items: Vec<serde_json::Value> = containers
                .iter()
                .map(|c| {
                    let status = c.status();
                    serde_json::json!({
                        "ociVersion": crate::oci::runtime_spec::OCI_VERSION,
                        "id": c.id(),
                        "pid": if status == Status::Stopped { 0 } else { c.pid().unwrap_or(0) },
                        "status": status.to_string(),
                        "bundle": c.record.bundle,
                        "rootfs": c.record.rootfs,
                        "created": c.record.created,
                        "owner": "root",
                    })
                })
                .collect();
            println!("{}", serde_json::Value::Array(items));
        }
        "table" => {
            println!(
                "{:<20} {:<8} {:<10} {:<40} {:<31} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for c in &containers {
                let status = c.status();
                let pid = if status == Status::Stopped {
                    0
                } else {
                    c.pid().unwrap_or(0)
                };
                println!(
                    "{:<20} {:<8} {:<10} {:<40} {:<31} root",
                    c.id(),
                    pid,
                    // Status's Display ignores widths; a String pads.
                    status.to_string(),
                    c.record.bundle,
                    c.record.created
                );
            }
        }
        other => {
            return Err(usage(format!(
                "invalid --format {other:?}; use table or json"
            )));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn ps(root: &Path, a: PsArgs) -> crate::Result<ExitCode> {
    let container = Container::load(root, &a.id)?;
    let pids = container.processes();
    match a.format.as_str() {
        "json" => {
            println!("{}", serde_json::to_string(&pids).unwrap_or_default());
            Ok(ExitCode::SUCCESS)
        }
        "table" => {
            let options = if a.ps_options.is_empty() {
                vec!["-ef".to_string()]
            } else {
                a.ps_options.clone()
            };
            let output = std::process::Command::new("ps")
                .args(&options)
                .output()
                .map_err(|e| Error::Io {
                    context: "running ps(1); install procps or use --format json".into(),
                    source: e,
                })?;
            let text = String::from_utf8_lossy(&output.stdout);
            let mut lines = text.lines();
            let Some(header) = lines.next() else {
                return Ok(ExitCode::SUCCESS);
            };
            let Some(column) = header.split_whitespace().position(|h| h == "PID") else {
                return Err(usage(
                    "ps output has no PID column; pass options that print it".into(),
                ));
            };
            println!("{header}");
            for line in lines {
                let pid = line
                    .split_whitespace()
                    .nth(column)
                    .and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|p| pids.contains(&p)) {
                    println!("{line}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        other => Err(usage(format!(
            "invalid --format {other:?}; use table or json"
        ))),
    }
}

fn spec(a: SpecArgs) -> crate::Result<ExitCode> {
    if a.rootless {
        return Err(usage(
            "spec --rootless is not supported: this runtime runs containers as root".into(),
        ));
    }
    let bundle = PathBuf::from(&a.bundle);
    if bundle.join("config.json").exists() {
        return Err(usage(format!(
            "{} already exists; remove it first",
            bundle.join("config.json").display()
        )));
    }
    write_config(&bundle, &example_spec())?;
    Ok(ExitCode::SUCCESS)
}

fn features() -> crate::Result<ExitCode> {
    let value = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::oci::runtime_spec::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer",
            "poststart", "poststop"],
        "mountOptions": ["async", "atime", "bind", "defaults", "dev", "diratime", "dirsync",
            "exec", "lazytime", "loud", "mand", "noatime", "nodev", "nodiratime", "noexec",
            "nolazytime", "nomand", "norelatime", "nostrictatime", "nosuid", "private", "rbind",
            "relatime", "remount", "ro", "rprivate", "rshared", "rslave", "runbindable", "rw",
            "shared", "silent", "slave", "strictatime", "suid", "sync", "tmpcopyup",
            "unbindable"],
        "linux": engine::features(),
        "annotations": {},
    });
    println!(
        "{}",
        serde_json::to_string_pretty(&value).map_err(|e| Error::Setup(e.to_string()))?
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Args {
        Args::from_args(&["cblock-runtime"], words).expect("arguments parse")
    }

    #[test]
    fn podman_create_line_parses() {
        let args = parse(&[
            "--root",
            "/run/r",
            "--log",
            "/tmp/l",
            "--log-format",
            "json",
            "create",
            "--bundle",
            "/b",
            "--pid-file",
            "/p",
            "c1",
        ]);
        assert_eq!(args.root.as_deref(), Some("/run/r"));
        assert_eq!(args.log_format, "json");
        let Some(Command::Create(create)) = args.command else {
            panic!("expected create");
        };
        assert_eq!(create.bundle, "/b");
        assert_eq!(create.pid_file.as_deref(), Some("/p"));
        assert_eq!(create.id, "c1");
    }

    #[test]
    fn kill_takes_optional_signal() {
        let Some(Command::Kill(kill)) = parse(&["kill", "--all", "c1", "KILL"]).command else {
            panic!("expected kill");
        };
        assert!(kill.all);
        assert_eq!(kill.signal.as_deref(), Some("KILL"));
    }

    #[test]
    fn exec_argv_form_keeps_dashes() {
        let Some(Command::Exec(exec)) = parse(&["exec", "-t", "c1", "sh", "-c", "echo hi"]).command
        else {
            panic!("expected exec");
        };
        assert!(exec.tty);
        assert_eq!(exec.command, vec!["sh", "-c", "echo hi"]);
    }

    #[test]
    fn unknown_option_rejected() {
        assert!(Args::from_args(&["cblock-runtime"], &["create", "--bogus", "c1"]).is_err());
    }
}
