//! Capturing a live instance's state and putting it back into a fresh one.
//!
//! [`instrument`] rewrites a component once, at deploy, so that it exports
//! `dwcp:state/access` and imports `dwcp:state/sink` (see `instrument.rs`).
//! [`StateAccess`] drives those functions: [`StateAccess::checkpoint`]
//! encodes the memory where it lies (the sink is handed a view of it, not a
//! copy) as a delta of the previous checkpoint, and [`StateAccess::restore`]
//! grows a fresh instance's memory, writes the decoded image into it through
//! the canonical ABI and sets its globals. Nothing is compiled per key: a
//! restored instance is an instance of the version's compiled component.
//!
//! State is only captured between requests, when no guest code runs and the
//! guest's stack is unwound.

mod instrument;

use dwcp_snapshot::{
    Base, BaseInfo, DecodeLimits, EncodeOptions, EncodeSummary, Global, GlobalKind, Mode,
    PAGE_SIZE, decode_into, no_dictionaries,
};
use wasmtime::component::{Instance, Linker, TypedFunc, WasmList};
use wasmtime::error::Context;
use wasmtime::{AsContextMut, StoreContextMut};
use wasmtime::{Result, bail};

use crate::guest::GuestState;
pub use instrument::{
    ACCESS_INTERFACE, GlobalType, NotCapturable, SINK_INTERFACE, StateLayout, instrument,
};

/// A WebAssembly page: the unit `memory.grow` counts in (the snapshot
/// format's pages are smaller).
const WASM_PAGE_SIZE: usize = 65536;

/// A key's memories as of its last checkpoint: the base of the next delta.
pub struct StateImage {
    /// The snapshot id of that checkpoint.
    pub id: u64,
    /// Each memory's bytes, in the component's order (none for a component
    /// without memory).
    pub memories: Vec<Vec<u8>>,
}

impl StateImage {
    /// The memories, borrowed, as the encoder takes them.
    pub fn slices(&self) -> Vec<&[u8]> {
        self.memories.iter().map(Vec::as_slice).collect()
    }

    /// Bytes of all memories together.
    pub fn memory_bytes(&self) -> u64 {
        self.memories.iter().map(|m| m.len() as u64).sum()
    }
}

/// A checkpoint taken, ready to store.
pub struct Checkpoint {
    /// The snapshot.
    pub bytes: Vec<u8>,
    /// What the encoder wrote.
    pub summary: EncodeSummary,
    /// Whether it is a delta of the previous image (else full).
    pub delta: bool,
}

/// What a checkpoint in progress gathers, parked in the store while the
/// guest's `capture` calls back into the sink.
pub(crate) struct Capture {
    layout_globals: Vec<GlobalType>,
    memories: u32,
    globals: Vec<u64>,
    /// Copies of the memories handed over before the last one. The sink
    /// sees one memory per call, and only the last call can encode them
    /// all; the last one (in a one-memory component, the only one) is
    /// encoded where it lies.
    earlier: Vec<Vec<u8>>,
    image: Option<StateImage>,
    delta: bool,
    result: Option<Result<Checkpoint>>,
}

impl Capture {
    /// Takes memory `index` (borrowed from the guest): copies it if more
    /// are to come, else encodes every memory with the globals already
    /// received.
    fn take_memory(&mut self, index: u32, memory: &[u8]) -> Result<()> {
        if index as usize != self.earlier.len() || index >= self.memories {
            bail!(
                "memory {index} handed over out of order ({} of {} taken)",
                self.earlier.len(),
                self.memories
            );
        }
        if !memory.len().is_multiple_of(PAGE_SIZE) {
            bail!(
                "memory {index} of {} bytes is not whole pages",
                memory.len()
            );
        }
        if index + 1 < self.memories {
            self.earlier.push(memory.to_vec());
            return Ok(());
        }
        let earlier = std::mem::take(&mut self.earlier);
        let mut memories: Vec<&[u8]> = earlier.iter().map(Vec::as_slice).collect();
        memories.push(memory);
        self.encode(&memories)
    }

    /// Encodes the state of a component with no memory.
    fn take_no_memory(&mut self) -> Result<()> {
        self.encode(&[])
    }

    /// Encodes `memories` with the globals, then brings the image up to
    /// date for the next delta.
    fn encode(&mut self, memories: &[&[u8]]) -> Result<()> {
        let globals = self.snapshot_globals()?;
        let mut bytes = Vec::new();
        let base_memories;
        let base = match &self.image {
            Some(image) if self.delta => {
                base_memories = image.slices();
                Some(Base {
                    id: image.id,
                    memories: &base_memories,
                })
            }
            _ => None,
        };
        let options = EncodeOptions {
            mode: Mode::Fast,
            base,
            ..EncodeOptions::default()
        };
        let mut changed = Vec::new();
        let summary =
            dwcp_snapshot::encode_tracked(&mut bytes, memories, &globals, &options, &mut changed)?;
        let delta = options.base.is_some();
        // The image follows the memories: after a delta only the pages the
        // encoder found changed are copied.
        let same_shape = |image: &StateImage| {
            image.memories.len() == memories.len()
                && image
                    .memories
                    .iter()
                    .zip(memories)
                    .all(|(a, b)| a.len() == b.len())
        };
        match &mut self.image {
            Some(image) if delta && same_shape(image) => {
                for (memory, page) in changed {
                    let (k, at) = (memory as usize, page as usize * PAGE_SIZE);
                    image.memories[k][at..at + PAGE_SIZE]
                        .copy_from_slice(&memories[k][at..at + PAGE_SIZE]);
                }
                image.id = summary.id;
            }
            Some(image) if same_shape(image) => {
                for (to, from) in image.memories.iter_mut().zip(memories) {
                    to.copy_from_slice(from);
                }
                image.id = summary.id;
            }
            _ => {
                self.image = Some(StateImage {
                    id: summary.id,
                    memories: memories.iter().map(|m| m.to_vec()).collect(),
                })
            }
        }
        self.result = Some(Ok(Checkpoint {
            bytes,
            summary,
            delta,
        }));
        Ok(())
    }

    fn snapshot_globals(&self) -> Result<Vec<Global>> {
        if self.globals.len() != self.layout_globals.len() {
            bail!(
                "{} globals captured, {} expected",
                self.globals.len(),
                self.layout_globals.len()
            );
        }
        Ok(self
            .layout_globals
            .iter()
            .zip(&self.globals)
            .map(|(ty, bits)| {
                let kind = global_kind(*ty);
                let mut value = [0u8; 16];
                value[..8].copy_from_slice(&bits.to_le_bytes());
                Global { kind, bits: value }
            })
            .collect())
    }
}

/// The snapshot format's name for a global's type.
fn global_kind(ty: GlobalType) -> GlobalKind {
    match ty {
        GlobalType::I32 => GlobalKind::I32,
        GlobalType::I64 => GlobalKind::I64,
        GlobalType::F32 => GlobalKind::F32,
        GlobalType::F64 => GlobalKind::F64,
    }
}

/// Adds the host side of `dwcp:state/sink` to a linker.
pub(crate) fn add_sink_to_linker(linker: &mut Linker<GuestState>) -> Result<()> {
    let mut sink = linker.instance(SINK_INTERFACE)?;
    sink.func_wrap(
        "global",
        |mut store: StoreContextMut<'_, GuestState>, (_index, bits): (u32, u64)| {
            if let Some(capture) = store.data_mut().capture.as_mut() {
                capture.globals.push(bits);
            }
            Ok(())
        },
    )?;
    sink.func_wrap(
        "memory",
        |mut store: StoreContextMut<'_, GuestState>, (index, data): (u32, WasmList<u8>)| {
            // Outside a checkpoint (a guest calling its own accessor) this
            // does nothing.
            let Some(mut capture) = store.data_mut().capture.take() else {
                return Ok(());
            };
            // After a failure the rest is ignored: the first error is the
            // one to report.
            if capture.result.is_none() {
                let memory = data.as_le_slice(&store);
                if let Err(e) = capture.take_memory(index, memory) {
                    capture.result = Some(Err(e));
                }
            }
            store.data_mut().capture = Some(capture);
            Ok(())
        },
    )?;
    Ok(())
}

/// The functions of an instance's `dwcp:state/access`.
#[derive(Clone)]
pub struct StateAccess {
    layout: StateLayout,
    capture: TypedFunc<(), ()>,
    set_global: TypedFunc<(u32, u64), ()>,
    resize: TypedFunc<(u32, u32), (i32,)>,
    /// Per memory: `seek-m{k}` and `load-m{k}`.
    loaders: Vec<(TypedFunc<(u32,), ()>, wasmtime::component::Func)>,
}

impl StateAccess {
    /// Finds the access functions of an instrumented instance.
    pub fn new(
        mut store: impl AsContextMut<Data = GuestState>,
        instance: &Instance,
        layout: StateLayout,
    ) -> Result<Self> {
        let mut store = store.as_context_mut();
        let interface = instance
            .get_export_index(&mut store, None, ACCESS_INTERFACE)
            .context("the component does not export dwcp:state/access")?;
        let mut func = |name: &str| {
            let index = instance
                .get_export_index(&mut store, Some(&interface), name)
                .with_context(|| format!("dwcp:state/access has no `{name}`"))?;
            instance
                .get_func(&mut store, index)
                .with_context(|| format!("`{name}` is not a function"))
        };
        let capture = func("capture")?;
        let set_global = func("set-global")?;
        let resize = func("resize")?;
        let mut found = Vec::new();
        for k in 0..layout.memories {
            found.push((func(&format!("seek-m{k}"))?, func(&format!("load-m{k}"))?));
        }
        let mut loaders = Vec::new();
        for (seek, load) in found {
            loaders.push((seek.typed(&store)?, load));
        }
        Ok(Self {
            capture: capture.typed(&store)?,
            set_global: set_global.typed(&store)?,
            resize: resize.typed(&store)?,
            loaders,
            layout,
        })
    }

    /// Captures the instance's state: a delta of `image` when `delta` and
    /// an image is given, else full. On success `image` holds the state just
    /// captured; on failure it is gone (the next checkpoint is full).
    pub async fn checkpoint(
        &self,
        mut store: impl AsContextMut<Data = GuestState>,
        image: &mut Option<StateImage>,
        delta: bool,
    ) -> Result<Checkpoint> {
        let mut store = store.as_context_mut();
        store.data_mut().capture = Some(Box::new(Capture {
            layout_globals: self.layout.globals.clone(),
            memories: self.layout.memories,
            globals: Vec::with_capacity(self.layout.globals.len()),
            earlier: Vec::new(),
            image: image.take(),
            delta,
            result: None,
        }));
        let called = self.capture.call_async(&mut store, ()).await;
        let mut capture = store
            .data_mut()
            .capture
            .take()
            .context("the capture state went missing")?;
        called.context("the guest's capture function failed")?;
        if self.layout.memories == 0 {
            capture.take_no_memory()?;
        }
        let result = capture
            .result
            .take()
            .context("the guest handed over no memory")?;
        if result.is_ok() {
            *image = capture.image.take();
        }
        result
    }

    /// Writes decoded state into a fresh instance of the same component.
    pub async fn restore(
        &self,
        mut store: impl AsContextMut<Data = GuestState>,
        memories: &[&[u8]],
        globals: &[Global],
    ) -> Result<()> {
        let mut store = store.as_context_mut();
        if globals.len() != self.layout.globals.len() {
            bail!(
                "the snapshot holds {} globals, the component has {}",
                globals.len(),
                self.layout.globals.len()
            );
        }
        if memories.len() != self.loaders.len() {
            bail!(
                "the snapshot holds {} memories, the component has {}",
                memories.len(),
                self.loaders.len()
            );
        }
        for (k, (memory, (seek, load))) in memories.iter().zip(&self.loaders).enumerate() {
            if !memory.len().is_multiple_of(WASM_PAGE_SIZE) {
                bail!(
                    "memory {k} of {} bytes is not whole WebAssembly pages",
                    memory.len()
                );
            }
            let pages = u32::try_from(memory.len() / WASM_PAGE_SIZE).context("memory too large")?;
            let (size,) = self
                .resize
                .call_async(&mut store, (k as u32, pages))
                .await?;
            if size != pages as i32 {
                bail!(
                    "cannot size memory {k} to {pages} pages (it has {size}): over the app's memory limit?"
                );
            }
            seek.call_async(&mut store, (0,)).await?;
            let load = load.typed::<(&[u8],), ()>(&store)?;
            load.call_async(&mut store, (*memory,)).await?;
        }
        for (i, (global, ty)) in globals.iter().zip(&self.layout.globals).enumerate() {
            let expected = global_kind(*ty);
            if global.kind != expected {
                bail!(
                    "global {i} is {:?} in the snapshot, {expected:?} in the component",
                    global.kind
                );
            }
            let mut bits = [0u8; 8];
            bits.copy_from_slice(&global.bits[..8]);
            self.set_global
                .call_async(&mut store, (i as u32, u64::from_le_bytes(bits)))
                .await?;
        }
        Ok(())
    }
}

/// Decodes deltas, in order, onto `image` (the state of the snapshot the
/// first is a delta of); the globals of the last. A delta of another base
/// is refused, and `image` may then be partly written: drop it.
pub fn decode_onto(
    image: &mut StateImage,
    deltas: &[&[u8]],
    limits: &DecodeLimits,
) -> Result<Vec<Global>> {
    let mut globals = Vec::new();
    for (i, bytes) in deltas.iter().enumerate() {
        let base = BaseInfo {
            id: image.id,
            lengths: image.memories.iter().map(|m| m.len() as u64).collect(),
        };
        let info = decode_into(
            *bytes,
            &mut image.memories,
            Some(&base),
            &no_dictionaries,
            limits,
        )
        .with_context(|| format!("delta {} of {}", i + 1, deltas.len()))?;
        if info.base_id != Some(base.id) {
            bail!(
                "delta {} of {} is not a delta of the state held",
                i + 1,
                deltas.len()
            );
        }
        globals = info.globals;
        image.id = dwcp_snapshot::snapshot_id(bytes).context("a snapshot without a trailer")?;
    }
    Ok(globals)
}

/// Decodes a chain of snapshots (a full one, then deltas in order) into the
/// memories and the globals of the last.
pub fn decode_chain(chain: &[&[u8]], limits: &DecodeLimits) -> Result<(StateImage, Vec<Global>)> {
    let mut memories: Vec<Vec<u8>> = Vec::new();
    let mut base: Option<BaseInfo> = None;
    let mut globals = Vec::new();
    for (i, bytes) in chain.iter().enumerate() {
        let info = decode_into(
            *bytes,
            &mut memories,
            base.as_ref(),
            &no_dictionaries,
            limits,
        )
        .with_context(|| format!("snapshot {} of {} in its chain", i + 1, chain.len()))?;
        globals = info.globals;
        base = Some(BaseInfo {
            id: dwcp_snapshot::snapshot_id(bytes).context("a snapshot without a trailer")?,
            lengths: info.memory_lengths,
        });
    }
    let id = base.map_or(0, |b| b.id);
    Ok((StateImage { id, memories }, globals))
}
