//! Turning uploaded bytes into a servable, pre-linked component.

use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime_wasi_http::p2::bindings::ProxyPre;

use crate::aot::CacheOutcome;
use crate::engine::Runtime;
use crate::guest::GuestState;
use crate::state::{NotCapturable, StateLayout, instrument};

/// Why an upload cannot be deployed. Each message names the problem and,
/// where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// Not WebAssembly at all.
    #[error(
        "not a WebAssembly component: the file does not start with the Wasm magic bytes (\\0asm); upload the .wasm a `cargo build --target wasm32-wasip2` produced"
    )]
    NotWasm,
    /// A core module rather than a component.
    #[error(
        "a core WebAssembly module, not a component: build for `wasm32-wasip2` (or wrap it with `wasm-tools component new`) so that it exports wasi:http/incoming-handler"
    )]
    CoreModule,
    /// A Wasm binary of an unknown layer or version.
    #[error("unsupported WebAssembly binary (version {0:#06x}, layer {1}): expected a component")]
    UnknownBinary(u16, u16),
    /// Malformed or failed to compile.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// Imports something this node does not provide.
    #[error("the component needs an import this node does not provide: {0}")]
    MissingImport(String),
    /// Does not export `wasi:http/incoming-handler`.
    #[error(
        "the component is of another world: it does not export wasi:http/incoming-handler (the wasi:http/proxy world); it exports: {0}"
    )]
    WrongWorld(String),
    /// The artifact or the cache could not be read or written.
    #[error("storage error: {0}")]
    Io(String),
    /// Pre-initialization (`--preinit`) failed.
    #[error("pre-initialization failed: {0}")]
    Preinit(String),
    /// Deployed `--stateful`, but its state cannot be captured.
    #[error("cannot deploy it as a stateful app: {0}")]
    NotCapturable(#[from] NotCapturable),
}

/// A component ready to be instantiated.
pub struct Prepared {
    /// The component, linked against the node's imports.
    pub pre: ProxyPre<GuestState>,
    /// Whether it came from the AOT cache.
    pub cache: CacheOutcome,
    /// Time spent compiling (zero on a cache hit).
    pub compile_time: Duration,
    /// For a stateful app: what its instrumented build hands over at a
    /// checkpoint.
    pub state: Option<StateLayout>,
}

/// Checks the 8-byte preamble, so that the common mistakes get a precise
/// message before the parser's.
pub fn check_component_bytes(bytes: &[u8]) -> Result<(), DeployError> {
    if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
        return Err(DeployError::NotWasm);
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    let layer = u16::from_le_bytes([bytes[6], bytes[7]]);
    match (layer, version) {
        (0, 1) => Err(DeployError::CoreModule),
        (1, _) => Ok(()),
        _ => Err(DeployError::UnknownBinary(version, layer)),
    }
}

impl Runtime {
    /// Prepares the component whose artifact hash is `sha256`: loads it from
    /// the AOT cache, or else validates and compiles `bytes()` and caches the
    /// result. Blocking (compilation takes CPU seconds): call it off the
    /// request path.
    pub fn prepare(
        &self,
        sha256: &str,
        bytes: impl FnOnce() -> std::io::Result<Vec<u8>>,
    ) -> Result<Prepared, DeployError> {
        self.prepare_code(sha256, bytes, None)
    }

    /// [`Runtime::prepare`] for a stateful app: the component is rewritten
    /// so that its state can be captured (see `state/instrument.rs`) and
    /// that build is compiled and cached apart (`{sha256}-state`). The
    /// bytes are always read: the rewrite (milliseconds) also tells what a
    /// checkpoint holds.
    pub fn prepare_stateful(
        &self,
        sha256: &str,
        bytes: impl FnOnce() -> std::io::Result<Vec<u8>>,
    ) -> Result<Prepared, DeployError> {
        let bytes = bytes().map_err(|e| DeployError::Io(e.to_string()))?;
        check_component_bytes(&bytes)?;
        wasmparser::Validator::new()
            .validate_all(&bytes)
            .map_err(|e| DeployError::Invalid(e.to_string()))?;
        let (instrumented, layout) = instrument(&bytes)?;
        self.prepare_code(
            &format!("{sha256}-state"),
            || Ok(instrumented),
            Some(layout),
        )
    }

    fn prepare_code(
        &self,
        sha256: &str,
        bytes: impl FnOnce() -> std::io::Result<Vec<u8>>,
        state: Option<StateLayout>,
    ) -> Result<Prepared, DeployError> {
        let (component, cache, compile_time) = match self.aot.load(&self.engine, sha256) {
            Ok(Some(component)) => (component, CacheOutcome::Hit, Duration::ZERO),
            found => {
                let cache = match found {
                    Err(why) => {
                        tracing::warn!(
                            artifact = sha256,
                            "cached code unusable ({why}); compiling again"
                        );
                        CacheOutcome::Recompiled
                    }
                    _ => CacheOutcome::Miss,
                };
                let bytes = bytes().map_err(|e| DeployError::Io(e.to_string()))?;
                let started = Instant::now();
                let component = self.compile(sha256, &bytes)?;
                (component, cache, started.elapsed())
            }
        };
        self.metrics.record_cache(cache);
        let linker = match state {
            Some(_) => &self.stateful_linker,
            None => &self.linker,
        };
        let pre = self.link(linker, &component)?;
        Ok(Prepared {
            pre,
            cache,
            compile_time,
            state,
        })
    }

    fn compile(&self, sha256: &str, bytes: &[u8]) -> Result<Component, DeployError> {
        check_component_bytes(bytes)?;
        let code = self
            .engine
            .precompile_component(bytes)
            .map_err(|e| DeployError::Invalid(format!("{e:#}")))?;
        let path = self
            .aot
            .store(sha256, &code)
            .map_err(|e| DeployError::Io(format!("cannot write the AOT cache: {e}")))?;
        // Load from the file just written, so that a fresh deploy runs the
        // same mapped code a restart will.
        // SAFETY: `code` is wasmtime's own output for this engine.
        unsafe { Component::deserialize_file(&self.engine, &path) }
            .map_err(|e| DeployError::Io(format!("cannot load compiled code: {e:#}")))
    }

    fn link(
        &self,
        linker: &Linker<GuestState>,
        component: &Component,
    ) -> Result<ProxyPre<GuestState>, DeployError> {
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| DeployError::MissingImport(format!("{e:#}")))?;
        ProxyPre::new(pre).map_err(|_| {
            let ty = component.component_type();
            let exports: Vec<String> = ty
                .exports(&self.engine)
                .map(|(name, _)| name.to_string())
                .collect();
            DeployError::WrongWorld(if exports.is_empty() {
                "nothing".into()
            } else {
                exports.join(", ")
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preamble_checks() {
        assert!(matches!(
            check_component_bytes(b""),
            Err(DeployError::NotWasm)
        ));
        assert!(matches!(
            check_component_bytes(b"garbage!garbage!"),
            Err(DeployError::NotWasm)
        ));
        assert!(matches!(
            check_component_bytes(b"\0asm\x01\0\0\0"),
            Err(DeployError::CoreModule)
        ));
        assert!(check_component_bytes(b"\0asm\x0d\0\x01\0").is_ok());
        assert!(matches!(
            check_component_bytes(b"\0asm\x01\0\x02\0"),
            Err(DeployError::UnknownBinary(1, 2))
        ));
    }
}
