//! The ahead-of-time compilation cache.
//!
//! A component is compiled once per (artifact hash, engine compatibility
//! hash) to `aot/<sha256>-<engine>.cwasm`, and loaded afterwards with
//! `Component::deserialize_file`, which maps the file instead of reading it.
//!
//! Loading machine code from disk is `unsafe`: wasmtime trusts the bytes.
//! So each file has a sidecar `.sum` holding the SHA-256 of its contents,
//! written after the file itself; a file whose sum is missing or wrong (a
//! torn write, a flipped bit, a hand edit) is treated as absent and compiled
//! again rather than executed.

use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use dwcp_store::{sha256_hex, write_atomically};
use wasmtime::Engine;
use wasmtime::component::Component;

/// How a component was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Loaded from the cache, no compilation.
    Hit,
    /// Not cached: compiled and stored.
    Miss,
    /// Cached but corrupt or incompatible: compiled again.
    Recompiled,
}

/// One file of the cache (compiled code or its checksum).
#[derive(Debug, Clone)]
pub struct AotFile {
    /// The artifact it was compiled from.
    pub sha256: String,
    /// Whether this node's engine can load it.
    pub current_engine: bool,
    /// Its size in bytes.
    pub size: u64,
    /// Where it is.
    pub path: PathBuf,
}

/// Compiled components on disk, keyed by artifact and engine.
#[derive(Debug)]
pub struct AotCache {
    dir: PathBuf,
    engine_key: String,
}

impl AotCache {
    /// Opens (creating) the cache directory for `engine`.
    pub fn open(dir: impl Into<PathBuf>, engine: &Engine) -> anyhow::Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Ok(Self {
            dir,
            engine_key: format!("{:016x}", hasher.finish()),
        })
    }

    /// The file a component with this artifact hash compiles to.
    pub fn path(&self, sha256: &str) -> PathBuf {
        self.dir.join(format!("{sha256}-{}.cwasm", self.engine_key))
    }

    fn sum_path(path: &Path) -> PathBuf {
        path.with_extension("cwasm.sum")
    }

    /// Loads the cached component for `sha256`, if a sound one is cached.
    /// `Err` means a file was there but could not be used.
    pub fn load(&self, engine: &Engine, sha256: &str) -> Result<Option<Component>, String> {
        let path = self.path(sha256);
        let expected = match fs::read_to_string(Self::sum_path(&path)) {
            Ok(sum) => sum,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return if path.exists() {
                    Err("checksum file missing".into())
                } else {
                    Ok(None)
                };
            }
            Err(e) => return Err(format!("checksum unreadable: {e}")),
        };
        let bytes = fs::read(&path).map_err(|e| format!("unreadable: {e}"))?;
        if sha256_hex(&bytes) != expected.trim() {
            return Err("contents do not match their checksum".into());
        }
        drop(bytes);
        // SAFETY: the file was written by `store` from wasmtime's own
        // compiler output and its checksum matches, so it is the code
        // wasmtime produced for this engine configuration.
        unsafe { Component::deserialize_file(engine, &path) }
            .map(Some)
            .map_err(|e| format!("not loadable: {e:#}"))
    }

    /// Stores compiled code for `sha256` and returns its path.
    pub fn store(&self, sha256: &str, code: &[u8]) -> io::Result<PathBuf> {
        let path = self.path(sha256);
        write_atomically(&path, code)?;
        write_atomically(&Self::sum_path(&path), sha256_hex(code).as_bytes())?;
        Ok(path)
    }

    /// Removes the cached code of `sha256` (for every engine).
    pub fn remove(&self, sha256: &str) -> io::Result<()> {
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(sha256))
            {
                fs::remove_file(entry.path())?;
            }
        }
        Ok(())
    }

    /// Every file of the cache: its artifact hash, whether it is for this
    /// engine (files for another one are left by an upgrade), its size.
    pub fn files(&self) -> io::Result<Vec<AotFile>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some((hash, rest)) = name.split_once('-') else {
                continue;
            };
            // A stateful app's instrumented build: `{sha256}-state-{engine}`.
            let rest = rest.strip_prefix("state-").unwrap_or(rest);
            out.push(AotFile {
                sha256: hash.to_string(),
                current_engine: rest.split('.').next() == Some(self.engine_key.as_str()),
                size: entry.metadata()?.len(),
                path: entry.path(),
            });
        }
        Ok(out)
    }
}
