//! The build cache. Every step of a stage has a key: the SHA-256 of the key
//! before it, the instruction after expansion, the build arguments the step
//! can see, and for ADD and COPY the digest of the source files' contents
//! and metadata. A stage's first key is made from its base image's ID. A
//! step that changes files records the layer it produced under its key, so
//! a rebuild with nothing changed finds every layer and runs no container.
//!
//! Entries live in `DATA/build-cache/KEY.json`, written to a temporary file
//! and renamed, so a crash never leaves a half entry. An entry whose layer
//! is gone is a miss, and `prune` removes such entries.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Errors of the build cache.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("build cache {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// The key of one build step, 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StepKey(String);

impl StepKey {
    /// Returns the key before a stage's first step, from its base image's ID
    /// (`scratch` for an empty base).
    pub fn base(image_id: &str) -> StepKey {
        StepKey(hex_sha256(&[b"base\0", image_id.as_bytes()]))
    }

    /// Returns the key of the step that follows `self`. `build_args` must be
    /// the arguments the step can see, in any order; `sources` is the digest
    /// of ADD or COPY sources.
    pub fn next(
        &self,
        instruction: &str,
        build_args: &[(String, String)],
        sources: Option<&str>,
    ) -> StepKey {
        let mut args: Vec<&(String, String)> = build_args.iter().collect();
        args.sort();
        let mut parts: Vec<&[u8]> =
            vec![b"step\0", self.0.as_bytes(), b"\0", instruction.as_bytes()];
        for (name, value) in &args {
            parts.extend([
                b"\0arg\0".as_slice(),
                name.as_bytes(),
                b"=",
                value.as_bytes(),
            ]);
        }
        if let Some(digest) = sources {
            parts.extend([b"\0sources\0".as_slice(), digest.as_bytes()]);
        }
        StepKey(hex_sha256(&parts))
    }

    /// Returns the key as hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn hex_sha256(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        // A length prefix keeps ("ab", "c") and ("a", "bc") apart.
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    format!("{:x}", hasher.finalize())
}

/// What a cached step produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Chain ID (`sha256:...`) of the layer the step committed, or `None`
    /// when the step changed no file.
    pub layer: Option<String>,
    /// When the layer was committed (RFC 3339). A rebuild from the cache
    /// reuses it, so that the image configuration, and with it the image
    /// ID, comes out the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
}

/// The cache directory of one data directory.
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Opens (and creates) the cache in `data_dir`, removing temporary
    /// files that a crash left behind.
    pub fn open(data_dir: &Path) -> Result<Cache, Error> {
        let dir = data_dir.join("build-cache");
        fs::create_dir_all(&dir).map_err(|source| Error::Io {
            path: dir.clone(),
            source,
        })?;
        let cache = Cache { dir };
        for name in cache.file_names()? {
            if name.starts_with('.') {
                let _ = fs::remove_file(cache.dir.join(&name));
            }
        }
        Ok(cache)
    }

    /// Returns the cache in `data_dir` for lookups only: it creates and
    /// sweeps nothing, so a missing directory makes every lookup a miss, and
    /// the temporary file of a concurrent `record` is left alone.
    pub fn at(data_dir: &Path) -> Cache {
        Cache {
            dir: data_dir.join("build-cache"),
        }
    }

    fn path_of(&self, key: &StepKey) -> PathBuf {
        self.dir.join(format!("{}.json", key.0))
    }

    fn file_names(&self) -> Result<Vec<String>, Error> {
        let entries = fs::read_dir(&self.dir).map_err(|source| Error::Io {
            path: self.dir.clone(),
            source,
        })?;
        Ok(entries
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect())
    }

    /// Returns the entry of `key`, if any. `layer_exists` tells whether a
    /// layer is still in the store; an entry whose layer is gone is a miss.
    pub fn lookup(&self, key: &StepKey, layer_exists: impl Fn(&str) -> bool) -> Option<Entry> {
        let text = fs::read(self.path_of(key)).ok()?;
        let entry: Entry = serde_json::from_slice(&text).ok()?;
        match &entry.layer {
            Some(layer) if !layer_exists(layer) => None,
            _ => Some(entry),
        }
    }

    /// Records `entry` under `key`, replacing any older one.
    pub fn record(&self, key: &StepKey, entry: &Entry) -> Result<(), Error> {
        let path = self.path_of(key);
        let temporary = self.dir.join(format!(".{}.tmp", key.0));
        let io_error = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let text = serde_json::to_vec(entry).expect("a cache entry always serialises");
        let mut file = fs::File::create(&temporary).map_err(io_error)?;
        file.write_all(&text)
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&temporary, &path))
            .map_err(|source| {
                let _ = fs::remove_file(&temporary);
                io_error(source)
            })
    }

    /// Removes every entry whose layer is not in `live_layers`, and every
    /// unreadable entry. Returns how many were removed.
    pub fn prune(&self, live_layers: &HashSet<String>) -> Result<usize, Error> {
        let mut removed = 0;
        for name in self.file_names()? {
            let path = self.dir.join(&name);
            let entry = fs::read(&path)
                .ok()
                .and_then(|text| serde_json::from_slice::<Entry>(&text).ok());
            let keep = match entry {
                Some(Entry {
                    layer: Some(layer), ..
                }) => live_layers.contains(&layer),
                Some(Entry { layer: None, .. }) => true,
                None => false,
            };
            if !keep {
                fs::remove_file(&path).map_err(|source| Error::Io { path, source })?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn step_key_depends_on_each_input() {
        let base = StepKey::base("sha256:aaa");
        let key = base.next("RUN make", &args(&[("A", "1")]), None);

        assert_ne!(
            key,
            StepKey::base("sha256:bbb").next("RUN make", &args(&[("A", "1")]), None)
        );
        assert_ne!(
            key,
            base.next("RUN make install", &args(&[("A", "1")]), None)
        );
        assert_ne!(key, base.next("RUN make", &args(&[("A", "2")]), None));
        assert_ne!(key, base.next("RUN make", &args(&[("A", "1")]), Some("d")));
        assert_eq!(key, base.next("RUN make", &args(&[("A", "1")]), None));
    }

    #[test]
    fn step_key_ignores_argument_order() {
        let base = StepKey::base("scratch");
        let one = base.next("RUN x", &args(&[("A", "1"), ("B", "2")]), None);
        let two = base.next("RUN x", &args(&[("B", "2"), ("A", "1")]), None);
        assert_eq!(one, two);
    }

    #[test]
    fn step_key_separates_fields() {
        let base = StepKey::base("scratch");
        let one = base.next("RUN x", &args(&[("A", "1=2")]), None);
        let two = base.next("RUN x", &args(&[("A=1", "2")]), None);
        assert_ne!(one, two);
    }

    #[test]
    fn cache_record_lookup_prune() {
        let dir = std::env::temp_dir().join(format!("cblocks-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let cache = Cache::open(&dir).unwrap();
        let kept = StepKey::base("x").next("RUN a", &[], None);
        let dropped = StepKey::base("x").next("RUN b", &[], None);
        let kept_entry = Entry {
            layer: Some("sha256:live".into()),
            created: Some("2026-12-04T00:00:00Z".into()),
        };
        cache.record(&kept, &kept_entry).unwrap();
        cache
            .record(
                &dropped,
                &Entry {
                    layer: Some("sha256:gone".into()),
                    created: None,
                },
            )
            .unwrap();

        assert_eq!(cache.lookup(&kept, |_| true), Some(kept_entry.clone()));
        assert_eq!(cache.lookup(&dropped, |layer| layer != "sha256:gone"), None);

        let live: HashSet<String> = ["sha256:live".to_string()].into();
        let removed = cache.prune(&live).unwrap();
        let reopened = Cache::open(&dir).unwrap();
        let after_kept = reopened.lookup(&kept, |_| true);
        let after_dropped = reopened.lookup(&dropped, |_| true);
        fs::remove_dir_all(&dir).unwrap();

        assert_eq!(removed, 1);
        assert_eq!(after_kept, Some(kept_entry));
        assert_eq!(after_dropped, None);
    }
}
