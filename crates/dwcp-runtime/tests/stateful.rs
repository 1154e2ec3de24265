//! A stateful component's state, captured from one instance and put back
//! into a fresh one: real wasmtime instances of the `counter` and `kv`
//! examples (`cargo xtask examples` builds them).

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use dwcp_runtime::{AppVersion, KeyInstance, Runtime, RuntimeSettings, VersionLabels};
use http_body_util::{BodyExt, Full};

fn example(name: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/examples")
        .join(format!("{name}.wasm"));
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(_) => {
            eprintln!(
                "skipped: {} is missing (run `cargo xtask examples`)",
                path.display()
            );
            None
        }
    }
}

fn stateful_version(runtime: &Runtime, bytes: Vec<u8>) -> Arc<AppVersion> {
    let prepared = runtime
        .prepare_stateful("test", || Ok(bytes))
        .expect("the example can be made stateful");
    assert!(prepared.state.is_some());
    let labels = VersionLabels {
        tenant: "t".into(),
        app: "a".into(),
        version: "v1".into(),
    };
    Arc::new(AppVersion::new(
        runtime,
        labels,
        prepared,
        Default::default(),
    ))
}

async fn call(key: &mut KeyInstance, method: &str, path: &str, body: &str) -> (u16, String) {
    let request = hyper::Request::builder()
        .method(method)
        .uri(format!("http://localhost{path}"))
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|never| -> wasmtime_wasi_http::Error { match never {} }),
        )
        .unwrap();
    let response = match key.serve(request).await {
        Ok(r) | Err(r) => r,
    };
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn runtime(dir: &std::path::Path) -> Runtime {
    let settings = RuntimeSettings {
        pool_instances: 8,
        max_memory: 256 << 20,
        ..Default::default()
    };
    Runtime::new(settings, dir, Default::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_resumes_from_full_and_delta_snapshots() {
    let Some(bytes) = example("counter") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let version = stateful_version(&runtime, bytes);

    let mut first = version.key_instance().await.unwrap();
    for expected in 1..=3 {
        assert_eq!(
            call(&mut first, "POST", "/?pad=300000", "").await,
            (200, format!("{expected}\n"))
        );
    }
    let full = first.checkpoint(false).await.unwrap();
    assert!(!full.delta, "the first checkpoint is full");
    // A request changes a few pages: the delta carries only those.
    assert_eq!(call(&mut first, "POST", "/", "").await.0, 200);
    let delta = first.checkpoint(false).await.unwrap();
    assert!(delta.delta, "the second is a delta of the first");
    assert!(
        delta.bytes.len() * 4 < full.bytes.len(),
        "delta {} bytes, full {}",
        delta.bytes.len(),
        full.bytes.len()
    );
    drop(first);

    // Back to the state after the delta, in a fresh instance.
    let mut second = version.key_instance().await.unwrap();
    second
        .restore(&[full.bytes.as_slice(), delta.bytes.as_slice()])
        .await
        .unwrap();
    assert_eq!(call(&mut second, "GET", "/", "").await, (200, "4\n".into()));
    assert_eq!(
        call(&mut second, "POST", "/", "").await,
        (200, "5\n".into())
    );
    // Its next checkpoint continues the chain...
    let next = second.checkpoint(false).await.unwrap();
    assert!(next.delta);
    // ... until the deltas outgrow half the full snapshot: a heap grown by
    // far more than it held makes a large delta, and the one after is full.
    call(&mut second, "POST", "/?pad=3000000", "").await;
    assert!(second.checkpoint(false).await.unwrap().delta);
    call(&mut second, "POST", "/", "").await;
    assert!(!second.checkpoint(false).await.unwrap().delta);

    // Back to the full one only.
    let mut third = version.key_instance().await.unwrap();
    third.restore(&[full.bytes.as_slice()]).await.unwrap();
    assert_eq!(call(&mut third, "GET", "/", "").await, (200, "3\n".into()));

    // A damaged snapshot is refused, not half-applied into a served state.
    let mut damaged = delta.bytes.clone();
    let at = damaged.len() / 2;
    damaged[at] ^= 0x40;
    let mut fourth = version.key_instance().await.unwrap();
    let Err(err) = fourth
        .restore(&[full.bytes.as_slice(), damaged.as_slice()])
        .await
    else {
        panic!("a damaged snapshot was accepted");
    };
    assert!(
        matches!(err, dwcp_runtime::KeyError::Damaged(_)),
        "damage is told apart from other failures: {err}"
    );
    runtime.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_entries_survive_a_restore() {
    let Some(bytes) = example("kv") else { return };
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let version = stateful_version(&runtime, bytes);

    let mut first = version.key_instance().await.unwrap();
    assert_eq!(call(&mut first, "PUT", "/colour", "blue").await.0, 204);
    assert_eq!(
        call(&mut first, "POST", "/fill?n=1000", "").await,
        (200, "1001\n".into())
    );
    assert_eq!(call(&mut first, "DELETE", "/key-00000007", "").await.0, 204);
    let snapshot = first.checkpoint(false).await.unwrap();
    drop(first);

    let mut second = version.key_instance().await.unwrap();
    second.restore(&[snapshot.bytes.as_slice()]).await.unwrap();
    assert_eq!(
        call(&mut second, "GET", "/colour", "").await,
        (200, "blue".into())
    );
    assert_eq!(
        call(&mut second, "GET", "/", "").await,
        (200, "1000\n".into())
    );
    assert_eq!(call(&mut second, "GET", "/key-00000007", "").await.0, 404);
    assert_eq!(
        call(&mut second, "GET", "/key-00000999", "").await,
        (200, format!("value 999 {}", 999 * 7919))
    );
    runtime.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_memories_of_a_two_memory_component_survive_a_restore() {
    use common::two_memories::{COUNT_AT, with_second_memory};
    let Some(bytes) = example("counter") else {
        return;
    };
    let bytes = with_second_memory(&bytes);
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let version = stateful_version(&runtime, bytes);
    // What memory 1 holds as of a checkpoint: its size and the count.
    let memory_1 = |chain: &[&[u8]]| {
        let (image, _) = dwcp_runtime::state::decode_chain(chain, &Default::default()).unwrap();
        assert_eq!(image.memories.len(), 2, "both memories are in the snapshot");
        let second = &image.memories[1];
        let count = u64::from_le_bytes(second[COUNT_AT..COUNT_AT + 8].try_into().unwrap());
        (second.len(), count)
    };

    let mut first = version.key_instance().await.unwrap();
    for expected in 1..=3 {
        assert_eq!(
            call(&mut first, "POST", "/", "").await,
            (200, format!("{expected}\n"))
        );
    }
    let full = first.checkpoint(false).await.unwrap();
    assert_eq!(memory_1(&[&full.bytes]), (2 << 16, 3));
    assert_eq!(call(&mut first, "POST", "/", "").await.0, 200);
    let delta = first.checkpoint(false).await.unwrap();
    assert!(
        delta.delta,
        "the second checkpoint is a delta of both memories"
    );
    assert_eq!(memory_1(&[&full.bytes, &delta.bytes]), (2 << 16, 4));
    drop(first);

    // A fresh instance has one page in memory 1 and a count of 0: the
    // restore grows it and writes both memories back.
    let mut second = version.key_instance().await.unwrap();
    second.restore(&[&full.bytes, &delta.bytes]).await.unwrap();
    assert_eq!(call(&mut second, "GET", "/", "").await, (200, "4\n".into()));
    let after = second.checkpoint(true).await.unwrap();
    assert_eq!(
        memory_1(&[&after.bytes]),
        (2 << 16, 5),
        "memory 1 went on from 4"
    );
    runtime.shutdown();
}

#[test]
fn components_that_change_tables_are_refused_with_the_reason() {
    // A component whose core module grows a table after start.
    let module = table_growing_module();
    let mut component = wasm_encoder::Component::new();
    component.section(&wasm_encoder::ModuleSection(&module));
    let mut instances = wasm_encoder::InstanceSection::new();
    instances.instantiate::<[(&str, wasm_encoder::ModuleArg); 0], &str>(0, []);
    component.section(&instances);
    let bytes = component.finish();
    let err = dwcp_runtime::state::instrument(&bytes).unwrap_err();
    assert!(err.to_string().contains("table.grow"), "{err}");
}

/// A module with one table and one function that runs `table.grow`.
fn table_growing_module() -> wasm_encoder::Module {
    use wasm_encoder::*;
    let mut module = Module::new();
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    module.section(&types);
    let mut functions = FunctionSection::new();
    functions.function(0);
    module.section(&functions);
    let mut tables = TableSection::new();
    tables.table(TableType {
        element_type: RefType::FUNCREF,
        minimum: 1,
        maximum: None,
        table64: false,
        shared: false,
    });
    module.section(&tables);
    let mut code = CodeSection::new();
    let mut f = Function::new([]);
    f.instructions()
        .ref_null(HeapType::FUNC)
        .i32_const(1)
        .table_grow(0)
        .end();
    code.function(&f);
    module.section(&code);
    module
}
