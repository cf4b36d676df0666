//! `cblock launch`: start a container from an image.

use std::process::ExitCode;

use argh::FromArgs;

use super::console::{
    parse_detach_keys, request_response, run_session, unexpected, window_size, Session,
    DEFAULT_DETACH_KEYS,
};
use super::{Error, Globals};
use crate::daemon::protocol::{LaunchRequest, Port, Request, Response, Volume};

/// The network of `--host-networking`, and the default.
const HOST_NETWORK: &str = "host";

#[derive(FromArgs)]
#[argh(subcommand, name = "launch")]
/// start a container from an image and attach its console (Ctrl+Q detaches)
pub struct Args {
    /// image to run, as IMAGE[:TAG] (tag default: latest)
    #[argh(option, short = 'n')]
    name: String,

    /// share the host's network stack (the default network)
    #[argh(switch, short = 'H', long = "host-networking")]
    host_networking: bool,

    /// network to join (default: host)
    #[argh(option, short = 'N')]
    network: Option<String>,

    /// do not attach the console; print the instance id and return
    #[argh(switch, short = 'A', long = "no-attach")]
    no_attach: bool,

    /// volume SRC:DST[:ro|rw] or TYPE:SRC:DST:PERMS; DST is resolved
    /// inside the container root (repeatable)
    #[argh(option, short = 'V', long = "volume")]
    volume: Vec<String>,

    /// published port HOST:CONTAINER[/udp][:public] (repeatable; needs a
    /// NAT network)
    #[argh(option, short = 'P', long = "port")]
    port: Vec<String>,

    /// remove the instance when it exits
    #[argh(switch)]
    rm: bool,

    /// environment variable KEY=VALUE, or KEY to pass this shell's value
    /// (repeatable)
    #[argh(option, short = 'e', long = "env")]
    env: Vec<String>,

    /// working directory inside the container
    #[argh(option, short = 'w', long = "workdir")]
    workdir: Option<String>,

    /// user (NAME, UID or UID:GID) to run the command as
    #[argh(option, short = 'u', long = "user")]
    user: Option<String>,

    /// program to run instead of the image's entrypoint ("" clears it)
    #[argh(option)]
    entrypoint: Option<String>,

    /// host name inside the container; also a name for the instance
    #[argh(option)]
    hostname: Option<String>,

    /// mount the container root read-only
    #[argh(switch, long = "read-only")]
    read_only: bool,

    /// memory limit in bytes, or with a k, m or g suffix (powers of 1024)
    #[argh(option)]
    memory: Option<String>,

    /// maximum number of processes in the container
    #[argh(option, long = "pids-limit")]
    pids_limit: Option<u64>,

    /// CPU limit in CPUs, such as 0.5 or 2
    #[argh(option)]
    cpus: Option<String>,

    /// mount a tmpfs at this path inside the container (repeatable)
    #[argh(option)]
    tmpfs: Vec<String>,

    /// key sequence that detaches, such as ctrl-p,ctrl-q (default: ctrl-q)
    #[argh(option, long = "detach-keys")]
    detach_keys: Option<String>,

    /// TERM for the container (default: $TERM)
    #[argh(option, short = 't', long = "terminal")]
    terminal: Option<String>,

    /// arguments after `--`, replacing the image's CMD
    #[argh(positional, greedy)]
    args: Vec<String>,
}

pub fn run(globals: &Globals, args: Args) -> crate::Result<ExitCode> {
    let detach = parse_detach_keys(args.detach_keys.as_deref().unwrap_or(DEFAULT_DETACH_KEYS))?;
    let request = build_request(args)?;
    let attach = request.attach;

    let (stream, response) = request_response(globals, &Request::Launch(Box::new(request)))?;
    let id = match response {
        Response::Launched { id } => id,
        other => return Err(unexpected(&other).into()),
    };
    if !attach {
        println!("cellblock: container launched: instance: {id}");
        return Ok(ExitCode::SUCCESS);
    }
    // Attached, standard output carries only the container's output.
    eprintln!("cellblock: container launched: instance: {id}");
    run_session(
        stream,
        &Session {
            id,
            detach,
            raw: true,
        },
    )
}

/// Launches a container without attaching and returns its instance id;
/// `args` are the words after `launch`. warden launches its blocks this way.
pub fn launch_detached(globals: &Globals, args: &[String]) -> crate::Result<String> {
    let words: Vec<&str> = args.iter().map(String::as_str).collect();
    let args = <Args as FromArgs>::from_args(&["cblock", "launch"], &words)
        .map_err(|early| Error::Usage(early.output.trim_end().to_string()))?;
    let mut request = build_request(args)?;
    request.attach = false;
    let (_stream, response) = request_response(globals, &Request::Launch(Box::new(request)))?;
    match response {
        Response::Launched { id } => Ok(id),
        other => Err(unexpected(&other).into()),
    }
}

fn build_request(args: Args) -> Result<LaunchRequest, Error> {
    let (image, tag) = split_reference(&args.name)?;
    let network = match (args.host_networking, args.network) {
        (true, Some(network)) if network != HOST_NETWORK => {
            return Err(Error::Usage(format!(
                "--host-networking conflicts with --network {network}; give one of them"
            )))
        }
        (_, Some(network)) => network,
        (_, None) => HOST_NETWORK.to_string(),
    };
    if network == HOST_NETWORK && !args.port.is_empty() {
        return Err(Error::Usage(
            "published ports (-P) need a NAT network, and host networking shares the host's \
             ports; drop -P or join a NAT network with --network"
                .into(),
        ));
    }

    Ok(LaunchRequest {
        image,
        tag,
        args: args.args,
        entrypoint: args
            .entrypoint
            .map(|e| if e.is_empty() { Vec::new() } else { vec![e] }),
        env: args
            .env
            .iter()
            .map(|e| parse_env(e))
            .collect::<Result<_, _>>()?,
        workdir: args.workdir,
        user: args.user,
        hostname: args.hostname,
        network,
        volumes: args
            .volume
            .iter()
            .map(|v| parse_volume(v))
            .collect::<Result<_, _>>()?,
        ports: args
            .port
            .iter()
            .map(|p| parse_port(p))
            .collect::<Result<_, _>>()?,
        tmpfs: args
            .tmpfs
            .into_iter()
            .map(check_absolute("--tmpfs"))
            .collect::<Result<_, _>>()?,
        read_only: args.read_only,
        memory_bytes: args.memory.as_deref().map(parse_memory).transpose()?,
        pids_limit: args.pids_limit.map(check_pids).transpose()?,
        cpu_millis: args.cpus.as_deref().map(parse_cpus).transpose()?,
        remove: args.rm,
        attach: !args.no_attach,
        term: args
            .terminal
            .or_else(|| std::env::var("TERM").ok())
            .unwrap_or_else(|| "xterm".into()),
        window: window_size(),
    })
}

/// Splits `IMAGE[:TAG]`; a colon before the last `/` belongs to a
/// registry host and port, not to the tag.
fn split_reference(reference: &str) -> Result<(String, String), Error> {
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    let (image, tag) = match reference[name_start..].find(':') {
        Some(i) => (
            &reference[..name_start + i],
            &reference[name_start + i + 1..],
        ),
        None => (reference, "latest"),
    };
    if image.is_empty() || tag.is_empty() {
        return Err(Error::Usage(format!(
            "image {reference:?} is not IMAGE[:TAG]; pass a name such as alpine:3.20"
        )));
    }
    Ok((image.to_string(), tag.to_string()))
}

fn parse_env(entry: &str) -> Result<String, Error> {
    match entry.split_once('=') {
        Some((key, _)) if !key.is_empty() => Ok(entry.to_string()),
        Some(_) => Err(Error::Usage(format!(
            "environment entry {entry:?} has no name; use -e KEY=VALUE"
        ))),
        None => match std::env::var(entry) {
            Ok(value) => Ok(format!("{entry}={value}")),
            Err(_) => Err(Error::Usage(format!(
                "environment variable {entry:?} is not set here; use -e {entry}=VALUE"
            ))),
        },
    }
}

fn check_absolute(option: &'static str) -> impl Fn(String) -> Result<String, Error> {
    move |path| {
        if path.starts_with('/') {
            Ok(path)
        } else {
            Err(Error::Usage(format!(
                "{option} path {path:?} is not absolute; give a path starting with /"
            )))
        }
    }
}

/// Parses `SRC:DST[:ro|rw]` or the original's `TYPE:SRC:DST:PERMS`.
fn parse_volume(spec: &str) -> Result<Volume, Error> {
    let invalid = |why: &str| {
        Error::Usage(format!(
            "volume {spec:?} {why}; use SRC:DST[:ro] or TYPE:SRC:DST:PERMS with absolute paths"
        ))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (kind, source, target, perms) = match parts.as_slice() {
        [source, target] => ("bind", *source, *target, "rw"),
        [source, target, perms] => ("bind", *source, *target, *perms),
        [kind, source, target, perms] => (*kind, *source, *target, *perms),
        _ => return Err(invalid("has the wrong number of fields")),
    };
    let kind = match kind {
        "bind" | "nullfs" => "bind",
        _ => return Err(invalid("has an unknown type (known: bind, nullfs)")),
    };
    let read_only = match perms {
        "ro" => true,
        "rw" => false,
        _ => return Err(invalid("has permissions other than ro or rw")),
    };
    if !source.starts_with('/') || !target.starts_with('/') {
        return Err(invalid("has a relative path"));
    }
    Ok(Volume {
        kind: kind.into(),
        source: source.into(),
        target: target.into(),
        read_only,
    })
}

/// Parses `HOST:CONTAINER[/tcp|/udp][:public]`.
fn parse_port(spec: &str) -> Result<Port, Error> {
    let invalid = || {
        Error::Usage(format!(
            "port {spec:?} is not HOST:CONTAINER[/udp][:public]; use ports from 1 to 65535"
        ))
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let (host, container, public) = match parts.as_slice() {
        [host, container] => (*host, *container, false),
        [host, container, "public"] => (*host, *container, true),
        _ => return Err(invalid()),
    };
    let (container, protocol) = match container.split_once('/') {
        Some((port, protocol @ ("tcp" | "udp"))) => (port, protocol),
        Some(_) => return Err(invalid()),
        None => (container, "tcp"),
    };
    let number = |text: &str| text.parse::<u16>().ok().filter(|p| *p > 0);
    Ok(Port {
        host: number(host).ok_or_else(invalid)?,
        container: number(container).ok_or_else(invalid)?,
        protocol: protocol.into(),
        public,
    })
}

fn parse_memory(text: &str) -> Result<u64, Error> {
    let lower = text.to_ascii_lowercase();
    let (digits, unit) = match lower.trim_end_matches('b').char_indices().last() {
        Some((i, 'k')) => (&lower[..i], 1u64 << 10),
        Some((i, 'm')) => (&lower[..i], 1 << 20),
        Some((i, 'g')) => (&lower[..i], 1 << 30),
        _ => (lower.as_str(), 1),
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(unit))
        .filter(|n| *n >= 1 << 20)
        .ok_or_else(|| {
            Error::Usage(format!(
                "--memory {text:?} is not a size of at least 1m; use bytes or a k, m or g suffix"
            ))
        })
}

fn check_pids(limit: u64) -> Result<u64, Error> {
    if limit == 0 {
        return Err(Error::Usage(
            "--pids-limit 0 would forbid the container's first process; give 1 or more".into(),
        ));
    }
    Ok(limit)
}

fn parse_cpus(text: &str) -> Result<u64, Error> {
    text.parse::<f64>()
        .ok()
        .filter(|cpus| cpus.is_finite() && *cpus >= 0.01 && *cpus <= 4096.0)
        .map(|cpus| (cpus * 1000.0).round() as u64)
        .ok_or_else(|| {
            Error::Usage(format!(
                "--cpus {text:?} is not a number of CPUs from 0.01 to 4096, such as 0.5"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_split() {
        assert_eq!(
            split_reference("alpine").unwrap(),
            ("alpine".into(), "latest".into())
        );
        assert_eq!(
            split_reference("alpine:3.20").unwrap(),
            ("alpine".into(), "3.20".into())
        );
        assert_eq!(
            split_reference("reg:5000/lib/alpine").unwrap(),
            ("reg:5000/lib/alpine".into(), "latest".into())
        );
        assert!(split_reference("alpine:").is_err());
        assert!(split_reference(":tag").is_err());
    }

    #[test]
    fn volume_forms() {
        let bind = parse_volume("/srv/data:/data:ro").unwrap();
        assert_eq!(bind.kind, "bind");
        assert!(bind.read_only);
        let original = parse_volume("nullfs:/srv:/mnt:rw").unwrap();
        assert_eq!(original.target, "/mnt");
        assert!(!original.read_only);
        assert!(parse_volume("/srv:/data").is_ok());
        assert!(parse_volume("srv:/data").is_err());
        assert!(parse_volume("/srv:/data:rx").is_err());
        assert!(parse_volume("/srv").is_err());
        assert!(parse_volume("zfs:/a:/b:ro").is_err());
    }

    #[test]
    fn port_forms() {
        let port = parse_port("8080:80").unwrap();
        assert_eq!((port.host, port.container, port.public), (8080, 80, false));
        let udp = parse_port("53:53/udp:public").unwrap();
        assert_eq!(udp.protocol, "udp");
        assert!(udp.public);
        assert!(parse_port("0:80").is_err());
        assert!(parse_port("70000:80").is_err());
        assert!(parse_port("80").is_err());
        assert!(parse_port("80:80/sctp").is_err());
    }

    #[test]
    fn memory_and_cpus() {
        assert_eq!(parse_memory("512m").unwrap(), 512 << 20);
        assert_eq!(parse_memory("2G").unwrap(), 2 << 30);
        assert_eq!(parse_memory("1048576").unwrap(), 1 << 20);
        assert!(parse_memory("12").is_err());
        assert!(parse_memory("lots").is_err());
        assert_eq!(parse_cpus("0.5").unwrap(), 500);
        assert!(parse_cpus("0").is_err());
        assert!(parse_cpus("NaN").is_err());
    }
}
