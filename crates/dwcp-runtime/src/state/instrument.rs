//! Rewrites a component so that the host can read its state out and write
//! it back, without compiling anything per instance.
//!
//! wasmtime keeps a component's core instances to itself: the host sees only
//! what the component exports. So the component is changed, once, at
//! deploy:
//!
//! - every core module that defines a memory or a mutable global exports
//!   them (`dwcp-state-m{N}`, `dwcp-state-g{N}`);
//! - an *accessor* core module is added and instantiated with those
//!   instances. It imports the host's `dwcp:state/sink` (lowered once per
//!   memory, with that memory as its `memory` option) and exports:
//!   `capture` (hands every global, then the memory, to the sink: the host
//!   reads the memory in place, no copy), `set-global`, `resize`, and per
//!   memory `seek-m{N}` / `load-m{N}`, whose `realloc` returns a cursor into
//!   the guest's memory, so that lowering a `list<u8>` argument *is* the
//!   write into that memory;
//! - those functions are lifted and exported as the instance
//!   `dwcp:state/access`.
//!
//! What cannot be captured is refused here, with the reason: a component
//! that changes its tables after start (`table.set`, `table.grow`, ...),
//! nested components with modules of their own or imported modules (their
//! instances would be out of reach), a module instantiated twice, shared or
//! 64-bit memories, and globals of a type the sink does not carry. Any
//! number of memories is captured, in module order.

use std::collections::HashMap;

use wasm_encoder::{
    Alias, CanonicalFunctionSection, CanonicalOption, Component, ComponentAliasSection,
    ComponentExportKind, ComponentExportSection, ComponentImportSection, ComponentInstanceSection,
    ComponentTypeRef, ComponentTypeSection, ComponentValType, EntityType, ExportKind,
    ExportSection, Function, ImportSection, InstanceSection, InstanceType, MemoryType, Module,
    ModuleArg, ModuleSection, PrimitiveValType, RawSection, TypeSection, ValType,
};
use wasmparser::{
    CanonicalFunction, Chunk, ComponentAlias, ComponentExternalKind, ComponentOuterAliasKind,
    Encoding, Instance, Operator, Parser, Payload, TypeRef,
};

/// The interface the host implements to receive state.
pub const SINK_INTERFACE: &str = "dwcp:state/sink";
/// The interface the rewritten component exports for the host.
pub const ACCESS_INTERFACE: &str = "dwcp:state/access";

/// Why a component's state cannot be captured.
#[derive(Debug, thiserror::Error)]
#[error("its state cannot be captured between requests: {0}")]
pub struct NotCapturable(pub String);

fn refuse<T>(reason: impl Into<String>) -> Result<T, NotCapturable> {
    Err(NotCapturable(reason.into()))
}

impl From<wasmparser::BinaryReaderError> for NotCapturable {
    fn from(e: wasmparser::BinaryReaderError) -> Self {
        NotCapturable(format!("cannot parse it: {e}"))
    }
}

/// A mutable global's type, as the sink carries it (its bits in a `u64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GlobalType {
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
}

/// What the rewritten component's `capture` hands over, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateLayout {
    /// How many memories, in the order `capture` hands them over.
    pub memories: u32,
    /// The mutable globals.
    pub globals: Vec<GlobalType>,
}

/// The state one core module defines, and its rewritten bytes.
struct ModuleState {
    bytes: Vec<u8>,
    /// Absolute indices of defined memories.
    memories: Vec<u32>,
    /// Absolute indices and types of defined mutable globals.
    globals: Vec<(u32, GlobalType)>,
}

/// Index spaces of the top-level component, counted as its sections go by.
#[derive(Default)]
struct Counts {
    types: u32,
    funcs: u32,
    instances: u32,
    core_modules: u32,
    core_instances: u32,
    core_funcs: u32,
    core_memories: u32,
}

impl Counts {
    fn add(&mut self, kind: ComponentExternalKind, what: &str) -> Result<(), NotCapturable> {
        match kind {
            ComponentExternalKind::Func => self.funcs += 1,
            ComponentExternalKind::Type => self.types += 1,
            ComponentExternalKind::Instance => self.instances += 1,
            ComponentExternalKind::Module => return refuse(format!("it has module {what}")),
            ComponentExternalKind::Component => return refuse(format!("it has component {what}")),
            ComponentExternalKind::Value => return refuse(format!("it has value {what}")),
        }
        Ok(())
    }
}

/// Rewrites `component` (valid, already checked) for state capture.
pub fn instrument(component: &[u8]) -> Result<(Vec<u8>, StateLayout), NotCapturable> {
    let mut out = Component::new();
    let mut counts = Counts::default();
    // Module index -> its state, for modules that define any.
    let mut stateful: HashMap<u32, ModuleState> = HashMap::new();
    // Module index -> the core instance it became.
    let mut instantiated: HashMap<u32, u32> = HashMap::new();

    let mut parser = Parser::new(0);
    let mut rest = component;
    loop {
        let (payload, consumed) = match parser.parse(rest, true)? {
            Chunk::Parsed { payload, consumed } => (payload, consumed),
            Chunk::NeedMoreData(_) => return refuse("it is truncated"),
        };
        rest = &rest[consumed..];
        match payload {
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } => return refuse("it is a core module, not a component"),
            Payload::ModuleSection {
                unchecked_range, ..
            } => {
                let bytes = component
                    .get(unchecked_range.clone())
                    .ok_or_else(|| NotCapturable("a module runs past its end".into()))?;
                rest = &rest[unchecked_range.len()..];
                let state = instrument_module(bytes)?;
                out.section(&RawSection {
                    id: wasm_encoder::ComponentSectionId::CoreModule as u8,
                    data: &state.bytes,
                });
                if !state.memories.is_empty() || !state.globals.is_empty() {
                    stateful.insert(counts.core_modules, state);
                }
                counts.core_modules += 1;
                continue;
            }
            Payload::ComponentSection {
                unchecked_range, ..
            } => {
                // Nested components wrap exports in their types; one with a
                // module of its own would hold state out of reach.
                let bytes = component
                    .get(unchecked_range.clone())
                    .ok_or_else(|| NotCapturable("a component runs past its end".into()))?;
                rest = &rest[unchecked_range.len()..];
                check_nested(bytes)?;
                out.section(&RawSection {
                    id: wasm_encoder::ComponentSectionId::Component as u8,
                    data: bytes,
                });
                continue;
            }
            Payload::End(_) => break,
            _ => {}
        }
        if let Some((id, range)) = payload.as_section() {
            out.section(&RawSection {
                id,
                data: &component[range],
            });
        }
        count_section(&payload, &mut counts, &mut instantiated)?;
    }

    // The instances whose state is captured, in module order.
    let mut captured: Vec<(u32, &ModuleState)> = Vec::new();
    let mut modules: Vec<_> = stateful.iter().collect();
    modules.sort_by_key(|(index, _)| **index);
    for (module, state) in modules {
        if let Some(&instance) = instantiated.get(module) {
            captured.push((instance, state));
        }
    }
    let memories: u32 = captured.iter().map(|(_, s)| s.memories.len() as u32).sum();
    let layout = StateLayout {
        memories,
        globals: captured
            .iter()
            .flat_map(|(_, s)| s.globals.iter().map(|(_, ty)| *ty))
            .collect(),
    };
    append_access(&mut out, &counts, &captured);
    Ok((out.finish(), layout))
}

/// Keeps the index spaces the appended sections refer to up to date.
fn count_section(
    payload: &Payload<'_>,
    counts: &mut Counts,
    instantiated: &mut HashMap<u32, u32>,
) -> Result<(), NotCapturable> {
    match payload {
        Payload::InstanceSection(reader) => {
            for instance in reader.clone() {
                if let Instance::Instantiate { module_index, .. } = instance?
                    && instantiated
                        .insert(module_index, counts.core_instances)
                        .is_some()
                {
                    return refuse("it instantiates a module twice");
                }
                counts.core_instances += 1;
            }
        }
        Payload::ComponentInstanceSection(reader) => {
            for instance in reader.clone() {
                if let wasmparser::ComponentInstance::Instantiate { args, .. } = instance?
                    && args.iter().any(|a| a.kind == ComponentExternalKind::Module)
                {
                    return refuse("it passes a module to a nested component");
                }
                counts.instances += 1;
            }
        }
        Payload::ComponentAliasSection(reader) => {
            for alias in reader.clone() {
                match alias? {
                    ComponentAlias::CoreInstanceExport { kind, .. } => match kind {
                        wasmparser::ExternalKind::Func | wasmparser::ExternalKind::FuncExact => {
                            counts.core_funcs += 1
                        }
                        wasmparser::ExternalKind::Memory => counts.core_memories += 1,
                        _ => {}
                    },
                    ComponentAlias::InstanceExport { kind, .. } => counts.add(kind, "aliases")?,
                    ComponentAlias::Outer { kind, .. } => match kind {
                        ComponentOuterAliasKind::Type => counts.types += 1,
                        ComponentOuterAliasKind::CoreType => {}
                        _ => return refuse("it aliases outer modules or components"),
                    },
                }
            }
        }
        Payload::ComponentCanonicalSection(reader) => {
            for function in reader.clone() {
                match function? {
                    CanonicalFunction::Lift { .. } => counts.funcs += 1,
                    _ => counts.core_funcs += 1,
                }
            }
        }
        Payload::ComponentImportSection(reader) => {
            for import in reader.clone() {
                counts.add(import?.ty.kind(), "imports")?;
            }
        }
        Payload::ComponentExportSection(reader) => {
            for export in reader.clone() {
                counts.add(export?.kind, "exports")?;
            }
        }
        Payload::ComponentTypeSection(reader) => counts.types += reader.count(),
        Payload::ComponentStartSection { .. } => {
            return refuse("it has a component start function");
        }
        _ => {}
    }
    Ok(())
}

/// Refuses a nested component that could instantiate a module: one of its
/// own, an imported one or an outer one (its instances would hold state
/// the accessor cannot reach).
fn check_nested(bytes: &[u8]) -> Result<(), NotCapturable> {
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::ModuleSection { .. } => {
                return refuse("it nests a component with modules of its own");
            }
            Payload::ComponentImportSection(reader) => {
                for import in reader {
                    if import?.ty.kind() == ComponentExternalKind::Module {
                        return refuse("it nests a component that imports a module");
                    }
                }
            }
            Payload::ComponentAliasSection(reader) => {
                for alias in reader {
                    if let ComponentAlias::Outer {
                        kind: ComponentOuterAliasKind::CoreModule,
                        ..
                    } = alias?
                    {
                        return refuse("it nests a component that reaches an outer module");
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Exports a module's defined memories and mutable globals, after checking
/// that its code leaves its tables alone after start.
fn instrument_module(bytes: &[u8]) -> Result<ModuleState, NotCapturable> {
    let mut imported_memories = 0u32;
    let mut imported_globals = 0u32;
    let mut memories = Vec::new();
    let mut globals = Vec::new();
    let mut existing_exports: Vec<(String, wasmparser::ExternalKind, u32)> = Vec::new();
    let mut out = Module::new();
    let mut exports_written = false;

    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload?;
        match &payload {
            Payload::ImportSection(reader) => {
                for import in reader.clone().into_imports() {
                    match import?.ty {
                        TypeRef::Memory(_) => imported_memories += 1,
                        TypeRef::Global(_) => imported_globals += 1,
                        _ => {}
                    }
                }
            }
            Payload::MemorySection(reader) => {
                for (i, memory) in reader.clone().into_iter().enumerate() {
                    let memory = memory?;
                    if memory.memory64 || memory.shared {
                        return refuse("it has a 64-bit or shared memory");
                    }
                    if memory.page_size_log2.is_some_and(|log| log != 16) {
                        return refuse("it has a memory with custom page sizes");
                    }
                    memories.push(imported_memories + i as u32);
                }
            }
            Payload::GlobalSection(reader) => {
                for (i, global) in reader.clone().into_iter().enumerate() {
                    let global = global?;
                    if !global.ty.mutable {
                        continue;
                    }
                    let ty = match global.ty.content_type {
                        wasmparser::ValType::I32 => GlobalType::I32,
                        wasmparser::ValType::I64 => GlobalType::I64,
                        wasmparser::ValType::F32 => GlobalType::F32,
                        wasmparser::ValType::F64 => GlobalType::F64,
                        other => {
                            return refuse(format!("it has a mutable global of type {other}"));
                        }
                    };
                    globals.push((imported_globals + i as u32, ty));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader.clone() {
                    let export = export?;
                    existing_exports.push((export.name.to_string(), export.kind, export.index));
                }
                write_exports(&mut out, &existing_exports, &memories, &globals)?;
                exports_written = true;
                continue;
            }
            Payload::StartSection { .. }
            | Payload::ElementSection(_)
            | Payload::DataCountSection { .. }
            | Payload::CodeSectionStart { .. }
            | Payload::DataSection(_)
                if !exports_written =>
            {
                write_exports(&mut out, &existing_exports, &memories, &globals)?;
                exports_written = true;
            }
            Payload::CodeSectionEntry(body) => {
                check_tables_untouched(body)?;
                continue;
            }
            _ => {}
        }
        match &payload {
            Payload::CodeSectionStart { range, .. } => {
                out.section(&RawSection {
                    id: wasm_encoder::SectionId::Code as u8,
                    data: &bytes[range.clone()],
                });
            }
            Payload::End(_) if !exports_written => {
                write_exports(&mut out, &existing_exports, &memories, &globals)?;
                exports_written = true;
            }
            other => {
                if let Some((id, range)) = other.as_section() {
                    out.section(&RawSection {
                        id,
                        data: &bytes[range],
                    });
                }
            }
        }
    }
    Ok(ModuleState {
        bytes: out.finish(),
        memories,
        globals,
    })
}

/// The module's export section with its state added.
fn write_exports(
    out: &mut Module,
    existing: &[(String, wasmparser::ExternalKind, u32)],
    memories: &[u32],
    globals: &[(u32, GlobalType)],
) -> Result<(), NotCapturable> {
    let mut section = ExportSection::new();
    for (name, kind, index) in existing {
        if name.starts_with("dwcp-state-") {
            return refuse(format!("it already exports `{name}`"));
        }
        let kind = match kind {
            wasmparser::ExternalKind::Func | wasmparser::ExternalKind::FuncExact => {
                ExportKind::Func
            }
            wasmparser::ExternalKind::Table => ExportKind::Table,
            wasmparser::ExternalKind::Memory => ExportKind::Memory,
            wasmparser::ExternalKind::Global => ExportKind::Global,
            wasmparser::ExternalKind::Tag => ExportKind::Tag,
        };
        section.export(name, kind, *index);
    }
    for &memory in memories {
        section.export(&memory_export(memory), ExportKind::Memory, memory);
    }
    for &(global, _) in globals {
        section.export(&global_export(global), ExportKind::Global, global);
    }
    out.section(&section);
    Ok(())
}

fn memory_export(index: u32) -> String {
    format!("dwcp-state-m{index}")
}

fn global_export(index: u32) -> String {
    format!("dwcp-state-g{index}")
}

/// Refuses code that changes a table: a restored instance gets its tables
/// from the module again, so they must be what instantiation makes them.
fn check_tables_untouched(body: &wasmparser::FunctionBody<'_>) -> Result<(), NotCapturable> {
    let mut reader = body.get_operators_reader()?;
    while !reader.eof() {
        let name = match reader.read()? {
            Operator::TableSet { .. } => "table.set",
            Operator::TableGrow { .. } => "table.grow",
            Operator::TableFill { .. } => "table.fill",
            Operator::TableCopy { .. } => "table.copy",
            Operator::TableInit { .. } => "table.init",
            _ => continue,
        };
        return refuse(format!(
            "its code changes a table after start (`{name}`), which a snapshot does not carry"
        ));
    }
    Ok(())
}

fn val_type(ty: GlobalType) -> ValType {
    match ty {
        GlobalType::I32 => ValType::I32,
        GlobalType::I64 => ValType::I64,
        GlobalType::F32 => ValType::F32,
        GlobalType::F64 => ValType::F64,
    }
}

/// Function type indices of the accessor module.
const TY_SINK_MEMORY: u32 = 0; // (index, ptr, len)
const TY_SINK_GLOBAL: u32 = 1; // (index, bits)
const TY_UNIT: u32 = 2; // ()
const TY_RESIZE: u32 = 3; // (index, pages) -> pages
const TY_SEEK: u32 = 4; // (offset)
const TY_LOAD: u32 = 5; // (ptr, len)
const TY_REALLOC: u32 = 6; // (old, old_size, align, size) -> ptr

/// Builds the accessor module for the captured instances.
fn accessor_module(captured: &[(u32, &ModuleState)]) -> Module {
    let mut types = TypeSection::new();
    types
        .ty()
        .function([ValType::I32, ValType::I32, ValType::I32], []);
    types.ty().function([ValType::I32, ValType::I64], []);
    types.ty().function([], []);
    types
        .ty()
        .function([ValType::I32, ValType::I32], [ValType::I32]);
    types.ty().function([ValType::I32], []);
    types.ty().function([ValType::I32, ValType::I32], []);
    types.ty().function(
        [ValType::I32, ValType::I32, ValType::I32, ValType::I32],
        [ValType::I32],
    );

    let memories: Vec<(u32, u32)> = captured
        .iter()
        .flat_map(|(instance, s)| s.memories.iter().map(move |m| (*instance, *m)))
        .collect();
    let globals: Vec<(u32, u32, GlobalType)> = captured
        .iter()
        .flat_map(|(instance, s)| s.globals.iter().map(move |(g, ty)| (*instance, *g, *ty)))
        .collect();
    let n = memories.len() as u32;

    let mut imports = ImportSection::new();
    for (instance, memory) in &memories {
        imports.import(
            &format!("i{instance}"),
            &memory_export(*memory),
            EntityType::Memory(MemoryType {
                minimum: 0,
                maximum: None,
                memory64: false,
                shared: false,
                page_size_log2: None,
            }),
        );
    }
    for (instance, global, ty) in &globals {
        imports.import(
            &format!("i{instance}"),
            &global_export(*global),
            EntityType::Global(wasm_encoder::GlobalType {
                val_type: val_type(*ty),
                mutable: true,
                shared: false,
            }),
        );
    }
    for k in 0..n {
        imports.import(
            "sink",
            &format!("memory-{k}"),
            EntityType::Function(TY_SINK_MEMORY),
        );
    }
    imports.import("sink", "global", EntityType::Function(TY_SINK_GLOBAL));
    let sink_global = n;

    // One cursor global per memory, after the imported globals.
    let cursor = |k: u32| globals.len() as u32 + k;
    let mut global_section = wasm_encoder::GlobalSection::new();
    for _ in 0..n {
        global_section.global(
            wasm_encoder::GlobalType {
                val_type: ValType::I32,
                mutable: true,
                shared: false,
            },
            &wasm_encoder::ConstExpr::i32_const(0),
        );
    }

    let mut functions = wasm_encoder::FunctionSection::new();
    let mut code = wasm_encoder::CodeSection::new();
    let mut exports = ExportSection::new();
    let mut next = n + 1;
    let mut define = |name: &str, ty: u32, body: Function| {
        functions.function(ty);
        code.function(&body);
        exports.export(name, ExportKind::Func, next);
        next += 1;
    };

    // capture: globals first, then memories (the host encodes when the
    // memory arrives, with the globals already in hand).
    let mut f = Function::new([]);
    for (i, (_, _, ty)) in globals.iter().enumerate() {
        let i = i as u32;
        f.instructions().i32_const(i as i32).global_get(i);
        match ty {
            GlobalType::I32 => {
                f.instructions().i64_extend_i32_u();
            }
            GlobalType::I64 => {}
            GlobalType::F32 => {
                f.instructions().i32_reinterpret_f32().i64_extend_i32_u();
            }
            GlobalType::F64 => {
                f.instructions().i64_reinterpret_f64();
            }
        }
        f.instructions().call(sink_global);
    }
    for k in 0..n {
        // A 4 GiB memory's length does not fit the list's u32: trap rather
        // than hand over a wrong one.
        f.instructions()
            .memory_size(k)
            .i32_const(0xffff)
            .i32_gt_u()
            .if_(wasm_encoder::BlockType::Empty)
            .unreachable()
            .end()
            .i32_const(k as i32)
            .i32_const(0)
            .memory_size(k)
            .i32_const(16)
            .i32_shl()
            .call(k);
    }
    f.instructions().end();
    define("capture", TY_UNIT, f);

    // set-global(index, bits)
    let mut f = Function::new([]);
    for (i, (_, _, ty)) in globals.iter().enumerate() {
        let i = i as u32;
        f.instructions()
            .local_get(0)
            .i32_const(i as i32)
            .i32_eq()
            .if_(wasm_encoder::BlockType::Empty)
            .local_get(1);
        match ty {
            GlobalType::I32 => {
                f.instructions().i32_wrap_i64();
            }
            GlobalType::I64 => {}
            GlobalType::F32 => {
                f.instructions().i32_wrap_i64().f32_reinterpret_i32();
            }
            GlobalType::F64 => {
                f.instructions().f64_reinterpret_i64();
            }
        }
        f.instructions().global_set(i).return_().end();
    }
    f.instructions().unreachable().end();
    define("set-global", TY_SINK_GLOBAL, f);

    // resize(index, pages) -> pages after: grows memory `index` to `pages`;
    // answers its size (smaller than asked: it could not grow; larger:
    // it was already larger), or -1 for no such memory.
    let mut f = Function::new([]);
    for k in 0..n {
        f.instructions()
            .local_get(0)
            .i32_const(k as i32)
            .i32_eq()
            .if_(wasm_encoder::BlockType::Empty)
            .local_get(1)
            .memory_size(k)
            .i32_gt_u()
            .if_(wasm_encoder::BlockType::Empty)
            .local_get(1)
            .memory_size(k)
            .i32_sub()
            .memory_grow(k)
            .drop()
            .end()
            .memory_size(k)
            .return_()
            .end();
    }
    f.instructions().i32_const(-1).end();
    define("resize", TY_RESIZE, f);

    for k in 0..n {
        let mut f = Function::new([]);
        f.instructions().local_get(0).global_set(cursor(k)).end();
        define(&format!("seek-m{k}"), TY_SEEK, f);
        // The bytes are already where they belong: `realloc` put them there.
        let mut f = Function::new([]);
        f.instructions().end();
        define(&format!("load-m{k}"), TY_LOAD, f);
        let mut f = Function::new([]);
        f.instructions()
            .global_get(cursor(k))
            .global_get(cursor(k))
            .local_get(3)
            .i32_add()
            .global_set(cursor(k))
            .end();
        define(&format!("realloc-m{k}"), TY_REALLOC, f);
    }

    let mut module = Module::new();
    module.section(&types);
    module.section(&imports);
    module.section(&functions);
    module.section(&global_section);
    module.section(&exports);
    module.section(&code);
    module
}

/// Appends the accessor, its wiring and the `dwcp:state/access` export.
fn append_access(out: &mut Component, counts: &Counts, captured: &[(u32, &ModuleState)]) {
    let memories: Vec<(u32, u32)> = captured
        .iter()
        .flat_map(|(instance, s)| s.memories.iter().map(move |m| (*instance, *m)))
        .collect();
    let n = memories.len() as u32;

    // Component types: the sink instance, then the lifted functions'.
    let t = counts.types;
    let mut types = ComponentTypeSection::new();
    let mut sink = InstanceType::new();
    sink.ty()
        .defined_type()
        .list(ComponentValType::Primitive(PrimitiveValType::U8));
    sink.ty()
        .function()
        .params([
            ("index", ComponentValType::Primitive(PrimitiveValType::U32)),
            ("data", ComponentValType::Type(0)),
        ])
        .result(None);
    sink.export("memory", ComponentTypeRef::Func(1));
    sink.ty()
        .function()
        .params([
            ("index", ComponentValType::Primitive(PrimitiveValType::U32)),
            ("value", ComponentValType::Primitive(PrimitiveValType::U64)),
        ])
        .result(None);
    sink.export("global", ComponentTypeRef::Func(2));
    types.instance(&sink); // t
    types
        .function()
        .params::<_, ComponentValType>([])
        .result(None); // t + 1: capture
    types
        .function()
        .params([
            ("index", ComponentValType::Primitive(PrimitiveValType::U32)),
            ("value", ComponentValType::Primitive(PrimitiveValType::U64)),
        ])
        .result(None); // t + 2: set-global
    types
        .function()
        .params([
            ("index", ComponentValType::Primitive(PrimitiveValType::U32)),
            ("pages", ComponentValType::Primitive(PrimitiveValType::U32)),
        ])
        .result(Some(ComponentValType::Primitive(PrimitiveValType::S32))); // t + 3: resize
    types
        .function()
        .params([("offset", ComponentValType::Primitive(PrimitiveValType::U32))])
        .result(None); // t + 4: seek
    types
        .defined_type()
        .list(ComponentValType::Primitive(PrimitiveValType::U8)); // t + 5
    types
        .function()
        .params([("data", ComponentValType::Type(t + 5))])
        .result(None); // t + 6: load
    out.section(&types);

    let mut imports = ComponentImportSection::new();
    imports.import(SINK_INTERFACE, ComponentTypeRef::Instance(t));
    out.section(&imports);
    let sink_instance = counts.instances;

    let mut aliases = ComponentAliasSection::new();
    aliases.alias(Alias::InstanceExport {
        instance: sink_instance,
        kind: ComponentExportKind::Func,
        name: "memory",
    });
    aliases.alias(Alias::InstanceExport {
        instance: sink_instance,
        kind: ComponentExportKind::Func,
        name: "global",
    });
    for (instance, memory) in &memories {
        aliases.alias(Alias::CoreInstanceExport {
            instance: *instance,
            kind: ExportKind::Memory,
            name: &memory_export(*memory),
        });
    }
    out.section(&aliases);
    let (sink_memory_func, sink_global_func) = (counts.funcs, counts.funcs + 1);
    let guest_memory = |k: u32| counts.core_memories + k;

    let mut lowered = CanonicalFunctionSection::new();
    for k in 0..n {
        lowered.lower(sink_memory_func, [CanonicalOption::Memory(guest_memory(k))]);
    }
    lowered.lower(sink_global_func, []);
    out.section(&lowered);
    let first_lowered = counts.core_funcs;

    let mut sink_core = InstanceSection::new();
    let mut items: Vec<(String, ExportKind, u32)> = (0..n)
        .map(|k| (format!("memory-{k}"), ExportKind::Func, first_lowered + k))
        .collect();
    items.push(("global".into(), ExportKind::Func, first_lowered + n));
    sink_core.export_items(
        items
            .iter()
            .map(|(name, kind, i)| (name.as_str(), *kind, *i)),
    );
    out.section(&sink_core);
    let sink_core_instance = counts.core_instances;

    out.section(&ModuleSection(&accessor_module(captured)));
    let accessor_module_index = counts.core_modules;
    let mut args: Vec<(String, ModuleArg)> = captured
        .iter()
        .map(|(instance, _)| (format!("i{instance}"), ModuleArg::Instance(*instance)))
        .collect();
    args.push(("sink".into(), ModuleArg::Instance(sink_core_instance)));
    let mut accessor = InstanceSection::new();
    accessor.instantiate(
        accessor_module_index,
        args.iter().map(|(name, arg)| (name.as_str(), *arg)),
    );
    out.section(&accessor);
    let accessor_instance = sink_core_instance + 1;

    // Core functions of the accessor, aliased in this order.
    let mut names: Vec<String> = vec!["capture".into(), "set-global".into(), "resize".into()];
    for k in 0..n {
        names.push(format!("seek-m{k}"));
        names.push(format!("load-m{k}"));
        names.push(format!("realloc-m{k}"));
    }
    let mut aliases = ComponentAliasSection::new();
    for name in &names {
        aliases.alias(Alias::CoreInstanceExport {
            instance: accessor_instance,
            kind: ExportKind::Func,
            name,
        });
    }
    out.section(&aliases);
    let first_alias = first_lowered + n + 1;
    let core_func =
        |name: &str| first_alias + names.iter().position(|n| n == name).unwrap_or(0) as u32;

    let mut lifts = CanonicalFunctionSection::new();
    let mut exported: Vec<(String, u32)> = Vec::new();
    let mut next_func = counts.funcs + 2;
    let mut lift = |lifts: &mut CanonicalFunctionSection,
                    name: &str,
                    ty: u32,
                    options: Vec<CanonicalOption>| {
        lifts.lift(core_func(name), ty, options);
        exported.push((name.to_string(), next_func));
        next_func += 1;
    };
    lift(&mut lifts, "capture", t + 1, vec![]);
    lift(&mut lifts, "set-global", t + 2, vec![]);
    lift(&mut lifts, "resize", t + 3, vec![]);
    for k in 0..n {
        lift(&mut lifts, &format!("seek-m{k}"), t + 4, vec![]);
        let realloc = core_func(&format!("realloc-m{k}"));
        lift(
            &mut lifts,
            &format!("load-m{k}"),
            t + 6,
            vec![
                CanonicalOption::Memory(guest_memory(k)),
                CanonicalOption::Realloc(realloc),
            ],
        );
    }
    out.section(&lifts);

    let mut instance = ComponentInstanceSection::new();
    instance.export_items(
        exported
            .iter()
            .map(|(name, f)| (name.as_str(), ComponentExportKind::Func, *f)),
    );
    out.section(&instance);
    let mut exports = ComponentExportSection::new();
    exports.export(
        ACCESS_INTERFACE,
        ComponentExportKind::Instance,
        sink_instance + 1,
        None,
    );
    out.section(&exports);
}
