//! Uploads that are not servable components are refused with an error that
//! names the problem, and leave nothing behind.

mod common;

use std::path::Path;

use common::{TestNode, data_dir};

/// A component that imports a function `missing-host-func` no node
/// provides: a type section with one `func()` type, and an import of it.
const FOREIGN_IMPORT: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00, // component preamble
    0x07, 0x05, 0x01, 0x40, 0x00, 0x01, 0x00, // type section: func() with no result
    0x0a, 0x16, 0x01, 0x00, 0x11, // import section: one plain name of 17 bytes
    b'm', b'i', b's', b's', b'i', b'n', b'g', b'-', b'h', b'o', b's', b't', b'-', b'f', b'u', b'n',
    b'c', 0x01, 0x00, // a function of type 0
];

fn refused(node: &TestNode, dir: &Path, name: &str, bytes: &[u8], expected: &str) {
    let file = dir.join(format!("{name}.wasm"));
    std::fs::write(&file, bytes).unwrap();
    let out = node.cli(&["deploy", &format!("demo/{name}"), file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{name} was accepted");
    assert!(
        stderr.contains(expected),
        "{name}: expected `{expected}` in: {stderr}"
    );
}

#[test]
fn bad_uploads_are_refused_with_the_reason_and_leave_no_trace() {
    let dir = data_dir();
    let uploads = data_dir();
    let node = TestNode::start(dir.path());

    refused(
        &node,
        uploads.path(),
        "garbage",
        b"this is not wasm at all",
        "not a WebAssembly component",
    );
    refused(
        &node,
        uploads.path(),
        "empty",
        b"",
        "not a WebAssembly component",
    );
    refused(
        &node,
        uploads.path(),
        "core",
        b"\0asm\x01\0\0\0",
        "a core WebAssembly module, not a component",
    );
    refused(
        &node,
        uploads.path(),
        "truncated",
        &b"\0asm\x0d\0\x01\0\x07\x03\x01"[..],
        "invalid component",
    );
    // A valid component of another world: it exports nothing.
    refused(
        &node,
        uploads.path(),
        "otherworld",
        b"\0asm\x0d\0\x01\0",
        "another world",
    );
    refused(
        &node,
        uploads.path(),
        "foreign",
        FOREIGN_IMPORT,
        "missing-host-func",
    );

    // A real component cut in half.
    let hello = std::fs::read(common::example("hello")).unwrap();
    refused(
        &node,
        uploads.path(),
        "half",
        &hello[..hello.len() / 2],
        "invalid component",
    );

    // Bad names and limits are refused before anything is stored.
    let file = common::example("hello");
    let file = file.to_str().unwrap();
    for (args, expected) in [
        (vec!["deploy", "Demo/hello", file], "not a valid name"),
        (vec!["deploy", "demo/hel.lo", file], "not a valid name"),
        (
            vec!["deploy", "demo/hello", file, "--memory", "lots"],
            "--memory",
        ),
        (
            vec!["deploy", "demo/hello", file, "--memory", "64TiB"],
            "--memory must be between",
        ),
        (
            vec!["deploy", "demo/hello", file, "--deadline", "soon"],
            "--deadline",
        ),
        (
            vec!["deploy", "demo/hello", file, "--concurrency", "0"],
            "--concurrency",
        ),
        (
            vec!["deploy", "demo/hello", file, "--version", "a/b"],
            "version `a/b` is not valid",
        ),
        (
            vec!["deploy", "demo/hello", "/nonexistent.wasm"],
            "cannot read /nonexistent.wasm",
        ),
    ] {
        let out = node.cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected `{expected}` in: {stderr}"
        );
    }

    // Nothing was stored: no app, no tenant, no artifact, no compiled code.
    assert_eq!(node.cli_ok(&["apps", "--json"]).trim(), "[]");
    for sub in ["artifacts", "aot"] {
        let left: Vec<_> = std::fs::read_dir(dir.path().join(sub)).unwrap().collect();
        assert!(left.is_empty(), "{sub} holds {left:?}");
    }

    // And the node still deploys and serves a good component.
    node.deploy("demo/hello", "hello", &[]);
    assert_eq!(
        node.request("GET", "hello.demo.localhost", "/", b"").status,
        200
    );
}
