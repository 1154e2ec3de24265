//! `dwcp bench codec` on memory images given on the command line: every
//! codec round-trips them and the JSON has the documented shape. (The
//! figures themselves are measured in docs/performance.md, not asserted.)

mod common;

use std::process::Command;

use common::{data_dir, dwcp};
use serde_json::Value;

#[test]
fn codec_bench_reports_every_codec_on_given_images() {
    let dir = data_dir();
    let mut image: Vec<u8> = (0..64 * 1024u32).map(|i| (i % 251) as u8).collect();
    image[..8192].fill(0);
    let first = dir.path().join("0.bin");
    std::fs::write(&first, &image).expect("write");
    image[10_000] ^= 0xff;
    // Not a whole number of pages: padded, not refused.
    image.extend_from_slice(b"tail");
    let second = dir.path().join("1.bin");
    std::fs::write(&second, &image).expect("write");
    let json = dir.path().join("out.json");

    let out = Command::new(dwcp())
        .args(["bench", "codec", "--json"])
        .arg(&json)
        .arg(&first)
        .arg(&second)
        .output()
        .expect("dwcp runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).expect("json")).expect("JSON");
    let codecs = |part: &str| -> Vec<String> {
        report[part]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| {
                for field in [
                    "input_bytes",
                    "output_bytes",
                    "ratio",
                    "encode_mb_s",
                    "decode_mb_s",
                ] {
                    assert!(r[field].as_f64().is_some_and(|v| v > 0.0), "{part}: {r}");
                }
                r["codec"].as_str().expect("codec").to_string()
            })
            .collect()
    };
    assert_eq!(
        codecs("full"),
        ["fast", "dense", "zstd-3", "zstd-19", "lz4"]
    );
    assert_eq!(
        codecs("incremental"),
        ["fast", "dense", "zstd-3", "zstd-19", "zstd-19-patch", "lz4"]
    );
    // Full: both images; incremental: the second given the first.
    assert_eq!(report["full"][0]["input_bytes"], 64 * 1024 + 68 * 1024);
    assert_eq!(report["incremental"][0]["input_bytes"], 68 * 1024);

    let out = Command::new(dwcp())
        .args(["bench", "codec"])
        .arg(dir.path().join("missing.bin"))
        .output()
        .expect("dwcp runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}
