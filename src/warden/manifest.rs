//! The manifest: the YAML file of cellblocks that warden launches, and the
//! `cblock launch` arguments of each block.
//!
//! The schema is the original's: `cellblocks:` contains blocks with `image`,
//! `network`, `fdescfs`, `procfs`, `tmpfs`, `volumes` and `ports`. Unknown
//! keys such as `description` are ignored, as there. Unlike the original,
//! every value is checked before anything is launched, so a typo in a port
//! or a permission names its block instead of failing at boot.

use std::path::Path;

use serde::Deserialize;

use super::Error;

/// The network that `--host-networking` selects, and the default.
const HOST_NETWORK: &str = "host";

/// A checked manifest: one block per container to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub blocks: Vec<Block>,
}

/// One container to launch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// 1-based position in the file, for messages.
    pub index: usize,
    /// Image as IMAGE[:TAG].
    pub image: String,
    /// Network to join; `None` for host networking.
    pub network: Option<String>,
    pub fdescfs: bool,
    pub procfs: bool,
    pub tmpfs: bool,
    pub volumes: Vec<Volume>,
    pub ports: Vec<Port>,
}

/// A volume as the original writes it: TYPE:ORIGIN:MOUNTPOINT:PERMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub kind: String,
    pub origin: String,
    pub mountpoint: String,
    pub read_only: bool,
}

/// A published port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub host: u16,
    pub container: u16,
    pub public: bool,
}

#[derive(Deserialize)]
#[serde(expecting = "a mapping with a `cellblocks:` list")]
struct RawManifest {
    #[serde(default)]
    cellblocks: Option<Vec<RawBlock>>,
}

#[derive(Deserialize)]
#[serde(expecting = "a block mapping such as `image: NAME[:TAG]`")]
struct RawBlock {
    image: Option<String>,
    network: Option<String>,
    #[serde(default)]
    fdescfs: bool,
    #[serde(default)]
    procfs: bool,
    #[serde(default)]
    tmpfs: bool,
    #[serde(default)]
    volumes: Vec<RawVolume>,
    #[serde(default)]
    ports: Vec<RawPort>,
}

#[derive(Deserialize)]
#[serde(expecting = "a volume mapping with type, origin, mountpoint and perms")]
struct RawVolume {
    #[serde(rename = "type")]
    kind: Option<String>,
    origin: Option<String>,
    mountpoint: Option<String>,
    perms: Option<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "a port mapping with host_port and container_port")]
struct RawPort {
    host_port: Option<PortValue>,
    container_port: Option<PortValue>,
    #[serde(default)]
    public: bool,
}

/// A port as written: YAML gives `443` as a number and `"443"` as text,
/// and the original took both.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a port number")]
enum PortValue {
    Number(i64),
    Text(String),
}

impl Manifest {
    /// Reads and checks the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            context: format!(
                "reading manifest {}; give another file with -p FILE",
                path.display()
            ),
            source,
        })?;
        Manifest::parse(path, &text)
    }

    /// Parses and checks manifest `text`; `path` is used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, Error> {
        let raw: Option<RawManifest> =
            serde_norway::from_str(text).map_err(|err| yaml_error(path, &err))?;
        let blocks = raw.and_then(|raw| raw.cellblocks).unwrap_or_default();
        if blocks.is_empty() {
            return Err(Error::Empty {
                path: path.to_path_buf(),
            });
        }
        let blocks = blocks
            .into_iter()
            .enumerate()
            .map(|(i, raw)| check_block(i + 1, raw))
            .collect::<Result<_, String>>()
            .map_err(|message| Error::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(Manifest { blocks })
    }
}

impl Block {
    /// Returns the words after `cblock` that launch this block, one word
    /// per option and per value.
    pub fn launch_args(&self) -> Vec<String> {
        let mut args: Vec<String> = vec!["launch".into(), "--no-attach".into()];
        args.extend(["--name".into(), self.image.clone()]);
        match &self.network {
            Some(network) => args.extend(["--network".into(), network.clone()]),
            None => args.push("--host-networking".into()),
        }
        if self.tmpfs {
            args.extend(["--tmpfs".into(), "/tmp".into()]);
        }
        for volume in &self.volumes {
            let perms = if volume.read_only { "ro" } else { "rw" };
            args.push("-V".into());
            args.push(format!(
                "{}:{}:{}:{perms}",
                volume.kind, volume.origin, volume.mountpoint
            ));
        }
        for port in &self.ports {
            args.push("-P".into());
            let public = if port.public { ":public" } else { "" };
            args.push(format!("{}:{}{public}", port.host, port.container));
        }
        args
    }

    /// Returns why this block cannot be launched on this system, if it
    /// requests a file system that the containers here do not have.
    pub fn unsupported(&self) -> Option<String> {
        if crate::platform::PSEUDO_FS_IN_EVERY_CONTAINER {
            return None;
        }
        let requested: Vec<&str> = [("fdescfs", self.fdescfs), ("procfs", self.procfs)]
            .into_iter()
            .filter_map(|(name, on)| on.then_some(name))
            .collect();
        if requested.is_empty() {
            return None;
        }
        Some(format!(
            "block {} ({}): {} is not mounted in containers on this system yet; \
             set it to false or mount it with a volume",
            self.index,
            self.image,
            requested.join(" and ")
        ))
    }
}

fn yaml_error(path: &Path, err: &serde_norway::Error) -> Error {
    let (line, column) = err.location().map_or((0, 0), |at| (at.line(), at.column()));
    Error::Yaml {
        path: path.to_path_buf(),
        line,
        column,
        // The position leads the message already.
        message: err
            .to_string()
            .replace(&format!(" at line {line} column {column}"), ""),
    }
}

fn check_block(index: usize, raw: RawBlock) -> Result<Block, String> {
    let image = match raw.image.as_deref().map(str::trim) {
        Some(image) if !image.is_empty() => image.to_string(),
        _ => {
            return Err(format!(
                "block {index} has no image; add `image: NAME[:TAG]` to it"
            ))
        }
    };
    let network = match raw.network.as_deref().map(str::trim) {
        None | Some(HOST_NETWORK) => None,
        Some("") => {
            return Err(format!(
                "block {index} ({image}) has an empty network; name a network, or drop \
                 the key for host networking"
            ))
        }
        Some(network) => Some(network.to_string()),
    };
    let volumes = raw
        .volumes
        .into_iter()
        .enumerate()
        .map(|(i, volume)| check_volume(index, &image, i + 1, volume))
        .collect::<Result<_, _>>()?;
    let ports = raw
        .ports
        .into_iter()
        .enumerate()
        .map(|(i, port)| check_port(index, &image, i + 1, port))
        .collect::<Result<_, _>>()?;
    Ok(Block {
        index,
        image,
        network,
        fdescfs: raw.fdescfs,
        procfs: raw.procfs,
        tmpfs: raw.tmpfs,
        volumes,
        ports,
    })
}

fn check_volume(
    index: usize,
    image: &str,
    number: usize,
    raw: RawVolume,
) -> Result<Volume, String> {
    let field = |value: Option<String>, key: &str| match value {
        Some(value) if !value.trim().is_empty() && !value.contains(':') => Ok(value),
        Some(value) if value.contains(':') => Err(format!(
            "block {index} ({image}), volume {number}: {key} {value:?} contains a colon, \
             which separates the fields of a volume; use a path without one"
        )),
        _ => Err(format!(
            "block {index} ({image}), volume {number} has no {key}; every volume needs \
             type, origin, mountpoint and perms"
        )),
    };
    let kind = field(raw.kind, "type")?;
    let origin = field(raw.origin, "origin")?;
    let mountpoint = field(raw.mountpoint, "mountpoint")?;
    let perms = field(raw.perms, "perms")?;
    let read_only = match perms.as_str() {
        "ro" => true,
        "rw" => false,
        _ => {
            return Err(format!(
                "block {index} ({image}), volume {number}: perms {perms:?} is not rw or ro; \
                 use rw for read-write or ro for read-only"
            ))
        }
    };
    Ok(Volume {
        kind,
        origin,
        mountpoint,
        read_only,
    })
}

fn check_port(index: usize, image: &str, number: usize, raw: RawPort) -> Result<Port, String> {
    let value = |value: Option<PortValue>, key: &str| {
        let invalid = |shown: String| {
            format!(
                "block {index} ({image}), port {number}: {key} {shown} is not a port number; \
                 use a number from 1 to 65535"
            )
        };
        match value {
            None => Err(format!(
                "block {index} ({image}), port {number} has no {key}; every port needs \
                 host_port and container_port"
            )),
            Some(PortValue::Number(n)) => u16::try_from(n)
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| invalid(n.to_string())),
            Some(PortValue::Text(text)) => text
                .trim()
                .parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(|| invalid(format!("{text:?}"))),
        }
    };
    Ok(Port {
        host: value(raw.host_port, "host_port")?,
        container: value(raw.container_port, "container_port")?,
        public: raw.public,
    })
}

/// Returns `word` quoted for a POSIX shell when it needs quoting.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, Error> {
        Manifest::parse(Path::new("test.yaml"), text)
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("base:14.3"), "base:14.3");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn ports_as_text_and_numbers() {
        let manifest = parse(
            "cellblocks:\n  - image: web\n    network: nat0\n    ports:\n      \
             - host_port: \"8080\"\n        container_port: 80\n",
        )
        .unwrap();
        assert_eq!(
            manifest.blocks[0].ports,
            vec![Port {
                host: 8080,
                container: 80,
                public: false
            }]
        );
    }

    #[test]
    fn yaml_error_has_position() {
        let err = parse("cellblocks:\n  - image: [a\n").unwrap_err();
        match err {
            Error::Yaml { line, column, .. } => assert!(line > 0 && column > 0, "{line}:{column}"),
            other => panic!("expected a YAML error, got {other}"),
        }
    }
}
