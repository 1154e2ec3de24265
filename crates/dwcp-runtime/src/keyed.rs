//! A stateful app's long-lived instance for one key.
//!
//! Unlike [`AppVersion::handle`], a request here runs to its end before the
//! response leaves: the guest finishes, the response body is read whole
//! (within the app's cap) and the caller can checkpoint the state the
//! request left before it releases the answer.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Body;
use wasmtime::Store;
use wasmtime_wasi_http::Error as HttpError;
use wasmtime_wasi_http::p2::bindings::Proxy;

use crate::body::{ResponseBody, text_response};
use crate::guest::GuestState;
use crate::metrics::TrapKind;
use crate::serve::{AppVersion, InstantiateError, cap_request, classify, describe, pass_request};
use crate::state::{Checkpoint, StateAccess, StateImage, decode_chain, decode_onto};

/// A full snapshot at the latest after this many deltas: a restore decodes
/// at most this many, and pruning can drop old chains.
pub const MAX_DELTAS: u32 = 1000;

/// ... or once the deltas since the last full snapshot add up to this share
/// of its size. A full snapshot of a large heap pauses its key for a while
/// (about 100 ms for 64 MiB on the machine it was measured on), so it is taken when the chain
/// has grown costly to restore and to keep, not on a fixed count.
pub const DELTAS_PER_FULL: f64 = 0.5;

/// Why a key has no instance.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The node's instance pool is full.
    #[error("the node has no free instance slot")]
    PoolFull,
    /// The guest was stopped (a trap, its deadline, its memory limit).
    #[error("{1}")]
    Stopped(TrapKind, String),
    /// The version is not a stateful app's.
    #[error("the version was not deployed as a stateful app")]
    NotStateful,
    /// Its saved state is damaged: it does not decode (a checksum, a
    /// length, a missing base). An older checkpoint may serve.
    #[error("its checkpoint is damaged: {0}")]
    Damaged(String),
    /// Its saved state could not be put back into the instance (over the
    /// memory limit, a trap): nothing is wrong with the checkpoint.
    #[error("cannot restore its state: {0}")]
    Restore(String),
}

/// A key's instance: its store, its state access and the image of its last
/// checkpoint (the base of the next delta).
pub struct KeyInstance {
    version: Arc<AppVersion>,
    store: Store<GuestState>,
    proxy: Proxy,
    access: StateAccess,
    image: Option<StateImage>,
    /// Deltas written since the last full snapshot.
    deltas: u32,
    /// Size of the last full snapshot, and of the deltas since.
    full_bytes: u64,
    delta_bytes: u64,
    /// Whether the app's log was told the guest keeps host resources.
    warned_resources: bool,
}

impl AppVersion {
    /// A fresh instance of this (stateful) version for a key.
    pub async fn key_instance(self: &Arc<Self>) -> Result<KeyInstance, KeyError> {
        let layout = self.state.clone().ok_or(KeyError::NotStateful)?;
        let (instance, handle) = match self.instantiate_with_handle().await {
            Ok(pair) => pair,
            Err(InstantiateError::PoolFull) => return Err(KeyError::PoolFull),
            Err(InstantiateError::Stopped(kind, detail)) => {
                self.report_stop(kind, &detail);
                return Err(KeyError::Stopped(kind, detail));
            }
        };
        let mut store = instance.store;
        let access = StateAccess::new(&mut store, &handle, layout)
            .map_err(|e| KeyError::Restore(format!("{e:#}")))?;
        Ok(KeyInstance {
            version: self.clone(),
            store,
            proxy: instance.proxy,
            access,
            image: None,
            deltas: 0,
            full_bytes: 0,
            delta_bytes: 0,
            warned_resources: false,
        })
    }
}

impl KeyInstance {
    /// The version it is an instance of.
    pub fn version(&self) -> &Arc<AppVersion> {
        &self.version
    }

    /// Puts back the state a chain of snapshots holds (a full one, then
    /// deltas, oldest first). On error the instance is unusable: drop it.
    pub async fn restore(&mut self, chain: &[&[u8]]) -> Result<(), KeyError> {
        let limits = dwcp_snapshot::DecodeLimits {
            max_memory_bytes: self.version.limits().memory_bytes,
            max_total_bytes: self.version.limits().memory_bytes,
        };
        let (image, globals) = decode_chain(chain, &limits).map_err(|e| {
            // Over the memory limit (`DecodeError::Limit`) is the app's
            // setting, not damage.
            let text = format!("{e:#}");
            if text.contains("over a limit") {
                KeyError::Restore(text)
            } else {
                KeyError::Damaged(text)
            }
        })?;
        self.version.arm_deadline(&mut self.store);
        self.access
            .restore(&mut self.store, &image.slices(), &globals)
            .await
            .map_err(|e| KeyError::Restore(format!("{e:#}")))?;
        self.image = Some(image);
        self.deltas = chain.len().saturating_sub(1) as u32;
        self.full_bytes = chain.first().map_or(0, |c| c.len() as u64);
        self.delta_bytes = chain.iter().skip(1).map(|c| c.len() as u64).sum();
        Ok(())
    }

    /// Moves the state on by `deltas` (taken, in order, after the state
    /// this instance holds: its restore or last checkpoint), as restoring
    /// the longer chain would, without decoding the chain again. What a
    /// live migration's destination does with the last changes of a key it
    /// restored while the source served. On error the instance is
    /// unusable: drop it.
    pub async fn apply(&mut self, deltas: &[&[u8]]) -> Result<(), KeyError> {
        let limits = dwcp_snapshot::DecodeLimits {
            max_memory_bytes: self.version.limits().memory_bytes,
            max_total_bytes: self.version.limits().memory_bytes,
        };
        let Some(image) = self.image.as_mut() else {
            return Err(KeyError::Restore(
                "the instance holds no state to apply onto".into(),
            ));
        };
        let globals =
            decode_onto(image, deltas, &limits).map_err(|e| KeyError::Damaged(format!("{e:#}")))?;
        self.version.arm_deadline(&mut self.store);
        self.access
            .restore(&mut self.store, &image.slices(), &globals)
            .await
            .map_err(|e| KeyError::Restore(format!("{e:#}")))?;
        self.deltas += deltas.len() as u32;
        self.delta_bytes += deltas.iter().map(|d| d.len() as u64).sum::<u64>();
        Ok(())
    }

    /// Captures the state: a delta of the last checkpoint, or a full
    /// snapshot when asked (`full`), when there is nothing to be a delta of,
    /// or when the chain has grown past [`MAX_DELTAS`] or
    /// [`DELTAS_PER_FULL`].
    pub async fn checkpoint(&mut self, full: bool) -> Result<Checkpoint, KeyError> {
        let chain_too_long = self.deltas >= MAX_DELTAS
            || self.delta_bytes as f64 > self.full_bytes as f64 * DELTAS_PER_FULL;
        let delta = !full && self.image.is_some() && !chain_too_long;
        self.version.arm_deadline(&mut self.store);
        let checkpoint = self
            .access
            .checkpoint(&mut self.store, &mut self.image, delta)
            .await
            .map_err(|e| KeyError::Stopped(TrapKind::trap, format!("checkpoint failed: {e:#}")))?;
        let size = checkpoint.bytes.len() as u64;
        if checkpoint.delta {
            self.deltas += 1;
            self.delta_bytes += size;
        } else {
            self.deltas = 0;
            self.delta_bytes = 0;
            self.full_bytes = size;
        }
        Ok(checkpoint)
    }

    /// Whether the guest keeps host resources between requests (Rust's
    /// standard library caches its stdout and stderr streams, for one): a
    /// snapshot does not carry them, so such a key is kept live rather than
    /// hibernated, and a wake after a crash may fail.
    pub fn holds_resources(&self) -> bool {
        !self.store.data().is_clean()
    }

    /// Bytes of linear memory the instance holds (its last checkpoint's).
    pub fn memory_bytes(&self) -> u64 {
        self.image.as_ref().map_or(0, StateImage::memory_bytes)
    }

    /// Serves one request to its end and answers the whole response. On
    /// `Err` the guest was stopped: drop the instance (its state since the
    /// last checkpoint is lost, as the request was never acknowledged).
    pub async fn serve<B>(
        &mut self,
        request: hyper::Request<B>,
    ) -> Result<hyper::Response<ResponseBody>, hyper::Response<ResponseBody>>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<HttpError>,
    {
        let limits = *self.version.limits();
        let request = match cap_request(request, &limits) {
            Ok(request) => request,
            Err(too_large) => return Ok(*too_large),
        };
        self.version.arm_deadline(&mut self.store);
        let (req, out, receiver) = match pass_request(&mut self.store, request) {
            Ok(handles) => handles,
            Err(refused) => return Ok(*refused),
        };

        let deadline = self.version.deadline();
        let started = std::time::Instant::now();
        let max_response = limits.max_response_body;
        // The body is read on a task of its own while the guest runs: it
        // may write more than a pipe holds before it returns. If the guest
        // fails, the read is abandoned (its channel may never close while
        // the store lives).
        let read = tokio::spawn(async move {
            let response = match receiver.await {
                Ok(Ok(response)) => response,
                Ok(Err(code)) => {
                    return Err(format!("the app failed the request: {code:?}"));
                }
                Err(_) => return Err("the app returned without sending a response".into()),
            };
            let (parts, body) = response.into_parts();
            let limit = usize::try_from(max_response).unwrap_or(usize::MAX);
            match Limited::new(body, limit).collect().await {
                Ok(collected) => Ok((parts, collected.to_bytes())),
                Err(e) => Err(format!("the app's response body failed: {e}")),
            }
        });
        let call = self
            .proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut self.store, req, out);
        let stop = match tokio::time::timeout(deadline, call).await {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some((classify(&e, &self.store), describe(&e))),
            Err(_) => Some((TrapKind::deadline, "execution deadline passed".to_string())),
        };
        if let Some((kind, detail)) = stop {
            read.abort();
            self.version.report_stop(kind, &detail);
            return Err(self.version.failure_response(kind));
        }
        // The guest returned: its body is complete or it kept the body's
        // handle, which would keep the read waiting; the rest of the
        // deadline bounds it.
        let left = deadline.saturating_sub(started.elapsed());
        let read = match tokio::time::timeout(left, read).await {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => Err(format!("reading the response failed: {e}")),
            Err(_) => Err("the app returned without finishing its response body".into()),
        };
        if !self.store.data().is_clean() && !self.warned_resources {
            // Handles the guest keeps (a cached stdout stream, a body) do
            // not survive a checkpoint: after a wake they name nothing.
            self.warned_resources = true;
            self.version.log().push(
                &Arc::from(self.version.labels().version.as_str()),
                crate::logs::LogStream::Node,
                "the guest keeps host resources between requests (a cached stdout stream, a body, a pollable): a checkpoint cannot carry them, so its keys stay live instead of hibernating, and a key woken after a crash may fail on its first use of one".into(),
            );
        }
        match read {
            Ok((parts, body)) => {
                let body = Full::new(body)
                    .map_err(|never| match never {})
                    .boxed_unsync();
                Ok(hyper::Response::from_parts(parts, body))
            }
            Err(reason) => {
                self.version.report_stop(TrapKind::no_response, &reason);
                Err(text_response(500, &reason))
            }
        }
    }
}
