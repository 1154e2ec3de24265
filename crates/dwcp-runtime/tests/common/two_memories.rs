//! Turns a one-memory `wasi:http/proxy` component into a two-memory one.
//!
//! No toolchain emits a component whose program has two memories, so the
//! test makes one: the module that exports the `handle` function gains a
//! second memory and a wrapper around `handle` that, on every request,
//! grows the second memory to two pages (on the first) and adds one to the
//! `u64` at [`COUNT_AT`] in it, before calling the original `handle`. The
//! guest's own state stays in memory 0; the wrapper's count is state in
//! memory 1 that a checkpoint must carry too.

use wasm_encoder::{
    CodeSection, Component, ComponentSectionId, ExportKind, ExportSection, Function,
    FunctionSection, Instruction, MemArg, MemorySection, MemoryType, Module, RawSection,
};
use wasmparser::{Chunk, ExternalKind, Parser, Payload};

/// Where, in memory 1, the wrapper keeps its count (in the second page).
pub const COUNT_AT: usize = 65536 + 8;

/// The rewritten component.
pub fn with_second_memory(component: &[u8]) -> Vec<u8> {
    let mut out = Component::new();
    let mut parser = Parser::new(0);
    let mut rest = component;
    let mut rewritten = 0;
    loop {
        let (payload, consumed) = match parser.parse(rest, true).expect("a valid component") {
            Chunk::Parsed { payload, consumed } => (payload, consumed),
            Chunk::NeedMoreData(_) => panic!("a truncated component"),
        };
        rest = &rest[consumed..];
        let nested = match &payload {
            Payload::ModuleSection {
                unchecked_range, ..
            } => Some((ComponentSectionId::CoreModule, unchecked_range.clone())),
            Payload::ComponentSection {
                unchecked_range, ..
            } => Some((ComponentSectionId::Component, unchecked_range.clone())),
            _ => None,
        };
        if let Some((id, range)) = nested {
            rest = &rest[range.len()..];
            let bytes = &component[range];
            let module = match id {
                ComponentSectionId::CoreModule => add_memory(bytes),
                _ => None,
            };
            rewritten += usize::from(module.is_some());
            out.section(&RawSection {
                id: id as u8,
                data: module.as_deref().unwrap_or(bytes),
            });
            continue;
        }
        if let Payload::End(_) = payload {
            break;
        }
        if let Some((id, range)) = payload.as_section() {
            out.section(&RawSection {
                id,
                data: &component[range],
            });
        }
    }
    assert_eq!(rewritten, 1, "one module exports `handle`");
    out.finish()
}

/// The module with a second memory and `handle` wrapped, or `None` when it
/// does not export `handle`.
fn add_memory(module: &[u8]) -> Option<Vec<u8>> {
    // First pass: where `handle` is and what its type is.
    let mut imported_funcs = 0u32;
    let mut func_types = Vec::new();
    let mut handle = None;
    for payload in Parser::new(0).parse_all(module) {
        match payload.expect("a valid module") {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    if let wasmparser::TypeRef::Func(_) = import.expect("an import").ty {
                        imported_funcs += 1;
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                func_types = reader.into_iter().map(|t| t.expect("a type")).collect();
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.expect("an export");
                    if export.kind == ExternalKind::Func && export.name.ends_with("#handle") {
                        handle = Some(export.index);
                    }
                }
            }
            _ => {}
        }
    }
    let handle = handle?;
    let handle_type = func_types[(handle - imported_funcs) as usize];
    let wrapper = imported_funcs + func_types.len() as u32;

    // Second pass: copy, adding the memory, the wrapper and its export.
    let mut out = Module::new();
    let mut code: Option<(CodeSection, u32)> = None;
    for payload in Parser::new(0).parse_all(module) {
        let payload = payload.expect("a valid module");
        match &payload {
            Payload::FunctionSection(_) => {
                let mut section = FunctionSection::new();
                for ty in func_types.iter().chain([&handle_type]) {
                    section.function(*ty);
                }
                out.section(&section);
            }
            Payload::MemorySection(reader) => {
                let mut section = MemorySection::new();
                for memory in reader.clone() {
                    let memory = memory.expect("a memory");
                    section.memory(MemoryType {
                        minimum: memory.initial,
                        maximum: memory.maximum,
                        memory64: memory.memory64,
                        shared: memory.shared,
                        page_size_log2: memory.page_size_log2,
                    });
                }
                assert_eq!(reader.count(), 1, "the module defines its one memory");
                section.memory(MemoryType {
                    minimum: 1,
                    maximum: None,
                    memory64: false,
                    shared: false,
                    page_size_log2: None,
                });
                out.section(&section);
            }
            Payload::ExportSection(reader) => {
                let mut section = ExportSection::new();
                for export in reader.clone() {
                    let export = export.expect("an export");
                    let (kind, index) = match export.kind {
                        ExternalKind::Func if export.index == handle => (ExportKind::Func, wrapper),
                        ExternalKind::Func => (ExportKind::Func, export.index),
                        ExternalKind::Table => (ExportKind::Table, export.index),
                        ExternalKind::Memory => (ExportKind::Memory, export.index),
                        ExternalKind::Global => (ExportKind::Global, export.index),
                        ExternalKind::Tag => (ExportKind::Tag, export.index),
                        other => panic!("an export of kind {other:?}"),
                    };
                    section.export(export.name, kind, index);
                }
                out.section(&section);
            }
            Payload::CodeSectionStart { count, .. } => code = Some((CodeSection::new(), *count)),
            Payload::CodeSectionEntry(body) => {
                let (section, left) = code.as_mut().expect("code after its start");
                section.raw(&module[body.range()]);
                *left -= 1;
                if *left == 0 {
                    section.function(&wrapper_body(handle));
                    out.section(&*section);
                }
            }
            Payload::End(_) => break,
            other => {
                if let Some((id, range)) = other.as_section() {
                    out.section(&RawSection {
                        id,
                        data: &module[range],
                    });
                }
            }
        }
    }
    Some(out.finish())
}

/// `handle(request, outparam)`: counts the request in memory 1, then calls
/// the original.
fn wrapper_body(handle: u32) -> Function {
    let at = MemArg {
        offset: 0,
        align: 3,
        memory_index: 1,
    };
    let mut f = Function::new([]);
    for instruction in [
        Instruction::MemorySize(1),
        Instruction::I32Const(2),
        Instruction::I32LtU,
        Instruction::If(wasm_encoder::BlockType::Empty),
        Instruction::I32Const(1),
        Instruction::MemoryGrow(1),
        Instruction::Drop,
        Instruction::End,
        Instruction::I32Const(COUNT_AT as i32),
        Instruction::I32Const(COUNT_AT as i32),
        Instruction::I64Load(at),
        Instruction::I64Const(1),
        Instruction::I64Add,
        Instruction::I64Store(at),
        Instruction::LocalGet(0),
        Instruction::LocalGet(1),
        Instruction::Call(handle),
        Instruction::End,
    ] {
        f.instruction(&instruction);
    }
    f
}
