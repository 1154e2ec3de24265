//! Pre-initialization (`dwcp deploy --preinit`): the component's own
//! initialization function is run once, at deploy, and the state it leaves
//! (memories and globals) becomes the component's initial state, written
//! back as data by `wasmtime-wizer`. Every instance then starts
//! initialized, instead of each request paying for it.
//!
//! Wizer's component support instruments the component with an export
//! that reads its memories and globals; this module instantiates that
//! instrumented component with the node's own imports, calls the
//! initialization function, and hands wizer the instance to read.
//!
//! The initialization runs without the app's config and secrets (they
//! would be frozen into the artifact) and without network access, under
//! the app's memory limit and [`INIT_DEADLINE`]; its result may be no
//! larger than an upload.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::{Component, Instance, Lift, WasmList};
use wasmtime_wizer::{ComponentInstanceState, Wizer};

use crate::deploy::DeployError;
use crate::engine::Runtime;
use crate::guest::{EgressContext, GuestState};
use crate::logs::{AppLog, DEFAULT_LOG_BYTES};
use crate::metrics::VersionLabels;

/// The export run when `--preinit` names none (wizer's convention).
pub const DEFAULT_INIT_FUNC: &str = "wizer-initialize";

/// How long the initialization function may run.
pub const INIT_DEADLINE: Duration = Duration::from_secs(30);

fn invalid(what: &str, e: impl std::fmt::Display) -> DeployError {
    DeployError::Preinit(format!("{what}: {e}"))
}

impl Runtime {
    /// Runs `init_func` of the component `bytes` once and returns the
    /// component with the state it left built in. Blocking: it compiles
    /// the instrumented component and runs guest code.
    pub fn preinitialize(
        &self,
        bytes: &[u8],
        init_func: &str,
        labels: &VersionLabels,
        memory_limit: u64,
        max_bytes: usize,
    ) -> Result<Vec<u8>, DeployError> {
        crate::deploy::check_component_bytes(bytes)?;
        let mut wizer = Wizer::new();
        // Kept: the component's own export lifts it.
        wizer.init_func(init_func).keep_init_func(true);
        let (cx, instrumented) = wizer
            .instrument_component(bytes)
            .map_err(|e| invalid("cannot instrument the component", format!("{e:#}")))?;
        let component = Component::new(&self.engine, &instrumented)
            .map_err(|e| DeployError::Invalid(format!("{e:#}")))?;
        let Some((item, index)) = component.get_export(None, init_func) else {
            return Err(DeployError::Preinit(format!(
                "the component exports no function `{init_func}` to run at deploy (name another with --preinit=NAME, or deploy without --preinit)"
            )));
        };
        match item {
            wasmtime::component::types::ComponentItem::ComponentFunc(f)
                if f.params().len() == 0 && f.results().len() == 0 => {}
            _ => {
                return Err(DeployError::Preinit(format!(
                    "the component's `{init_func}` is not a function without parameters and results"
                )));
            }
        }

        let log = Arc::new(AppLog::new(&labels.tenant, &labels.app, DEFAULT_LOG_BYTES));
        let egress = Arc::new(EgressContext {
            policy: Arc::default(),
            labels: labels.clone(),
            metrics: self.metrics.clone(),
        });
        let state = GuestState::new(
            memory_limit,
            self.metrics.clone(),
            egress,
            &[],
            log.streams(labels),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        // Past the deadline the guest traps at its next epoch tick; the
        // timeout below covers a guest blocked in the host (a sleep).
        store.data_mut().deadline = Instant::now() + INIT_DEADLINE;
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::msg(
                    "the initialization ran past its deadline",
                ))
            } else {
                Ok(wasmtime::UpdateDeadline::Continue(1))
            }
        });
        store.set_epoch_deadline(1);

        let linker = &self.linker;
        let run = async move {
            let instance = linker
                .instantiate_async(&mut store, &component)
                .await
                .map_err(|e| invalid("instantiating it failed", format!("{e:#}")))?;
            let func = instance
                .get_func(&mut store, index)
                .ok_or_else(|| DeployError::Preinit(format!("no function `{init_func}`")))?;
            func.call_async(&mut store, &[], &mut [])
                .await
                .map_err(|e| invalid(&format!("`{init_func}` failed"), format!("{e:#}")))?;
            // Reading the state out is the node's work, not the guest's:
            // it gets a deadline of its own.
            store.data_mut().deadline = Instant::now() + INIT_DEADLINE;
            let mut access = Access {
                store: &mut store,
                instance,
                error: None,
            };
            let snapshot = wizer
                .snapshot_component(&cx, &mut access)
                .await
                .map_err(|e| invalid("cannot take the state", format!("{e:#}")))?;
            if let Some(e) = access.error {
                return Err(invalid("cannot read the state", e));
            }
            if snapshot.len() > max_bytes {
                return Err(DeployError::Preinit(format!(
                    "the initialized component would be {} bytes, over this node's limit of {max_bytes} (`dwcp up --max-upload`)",
                    snapshot.len()
                )));
            }
            Ok(snapshot)
        };
        let timed = async {
            tokio::time::timeout(INIT_DEADLINE * 2, run)
                .await
                .unwrap_or_else(|_| {
                    Err(DeployError::Preinit(
                        "the initialization did not finish within its deadline".into(),
                    ))
                })
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .map_err(|e| DeployError::Io(e.to_string()))?;
        // On a thread of its own: wizer asserts on what it reads, and a
        // component it cannot handle must fail its deploy, not the node.
        std::thread::scope(|scope| {
            scope
                .spawn(|| rt.block_on(timed))
                .join()
                .unwrap_or_else(|_| {
                    Err(DeployError::Preinit(
                        "wasmtime-wizer could not take this component's state".into(),
                    ))
                })
        })
    }
}

/// What wizer reads the state through: the instrumented component's
/// accessor exports. The trait has no error channel, so the first failure
/// is kept and reported once wizer is done.
struct Access<'a> {
    store: &'a mut Store<GuestState>,
    instance: Instance,
    error: Option<String>,
}

impl Access<'_> {
    async fn call<R: Lift + Send + Sync + 'static, O: Default>(
        &mut self,
        instance: &str,
        func: &str,
        use_ret: impl FnOnce(&Store<GuestState>, R) -> O,
    ) -> O {
        if self.error.is_some() {
            return O::default();
        }
        let found = self
            .instance
            .get_export_index(&mut *self.store, None, instance)
            .and_then(|i| {
                self.instance
                    .get_export_index(&mut *self.store, Some(&i), func)
            })
            .and_then(|f| {
                self.instance
                    .get_typed_func::<(), (R,)>(&mut *self.store, f)
                    .ok()
            });
        let Some(typed) = found else {
            self.error = Some(format!("no accessor {instance}#{func}"));
            return O::default();
        };
        match typed.call_async(&mut *self.store, ()).await {
            Ok((ret,)) => use_ret(self.store, ret),
            Err(e) => {
                self.error = Some(format!("{instance}#{func}: {e:#}"));
                O::default()
            }
        }
    }
}

impl ComponentInstanceState for Access<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        let mut contents = Some(contents);
        self.call(instance, func, |store, list: WasmList<u8>| {
            if let Some(contents) = contents.take() {
                contents(list.as_le_slice(store));
            }
        })
        .await;
        // On a failure wizer still expects its callback; the error is
        // reported once it is done.
        if let Some(contents) = contents {
            contents(&[]);
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, r: i32| r).await
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, r: i64| r).await
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, r: f32| r.to_bits()).await
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, r: f64| r.to_bits()).await
    }
}
