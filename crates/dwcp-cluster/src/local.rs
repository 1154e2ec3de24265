//! A `nats-server` process on a free loopback port, with JetStream in a
//! directory of its own: what the tests (and a local trial of a cluster)
//! run against. Killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running local nats-server.
pub struct LocalServer {
    child: Child,
    /// Its client URL (`nats://127.0.0.1:PORT`, or `tls://…` when asked).
    pub url: String,
    dir: PathBuf,
}

impl LocalServer {
    /// The binary: `DWCP_NATS_SERVER`, else the one `cargo xtask test`
    /// installs under `target/tools` (found from `workspace`), else
    /// `nats-server` on the PATH if it is 2.1x. `None` when there is none.
    pub fn binary(workspace: &Path) -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("DWCP_NATS_SERVER") {
            return Some(PathBuf::from(p));
        }
        let installed = workspace.join("target/tools/nats-server-2.15.1/bin/nats-server");
        if installed.exists() {
            return Some(installed);
        }
        Command::new("nats-server")
            .arg("--version")
            .output()
            .ok()
            .filter(|o| String::from_utf8_lossy(&o.stdout).contains("v2.1"))
            .map(|_| PathBuf::from("nats-server"))
    }

    /// Starts `binary` with JetStream stored in `dir` and `extra`
    /// configuration lines; its URL uses `scheme` (`nats` or `tls`).
    pub fn start(
        binary: &Path,
        dir: &Path,
        extra: &str,
        scheme: &str,
    ) -> std::io::Result<LocalServer> {
        let config = dir.join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:-1\njetstream {{ store_dir: \"{}\" }}\n{extra}\n",
                dir.join("store").display()
            ),
        )?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(&config)
            .arg("--ports_file_dir")
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let mut server = LocalServer {
            url: String::new(),
            dir: dir.to_path_buf(),
            child,
        };
        // The server writes its ports once it listens.
        let ports = dir.join(format!("nats-server_{}.ports", server.child.id()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ports)
                && let Ok(v) = serde_json::from_str::<serde_json::Value>(&text)
                && let Some(url) = v["nats"][0].as_str()
            {
                let port = url.rsplit(':').next().unwrap_or_default();
                server.url = format!("{scheme}://127.0.0.1:{port}");
                return Ok(server);
            }
            if Instant::now() > deadline || server.child.try_wait()?.is_some() {
                return Err(std::io::Error::other(format!(
                    "nats-server did not start (config {})",
                    config.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// For tests: a server in a temporary directory (kept alive with it),
    /// or `None` with a notice when no nats-server is installed, so the
    /// test can skip rather than fail on a machine without one.
    pub fn for_tests(
        workspace: &Path,
        extra: &str,
        scheme: &str,
    ) -> Option<(LocalServer, tempfile::TempDir)> {
        let Some(bin) = LocalServer::binary(workspace) else {
            eprintln!(
                "NOTICE: no nats-server (set DWCP_NATS_SERVER, or run `cargo xtask test`, which installs it): skipped"
            );
            return None;
        };
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server =
            LocalServer::start(&bin, dir.path(), extra, scheme).expect("nats-server starts");
        Some((server, dir))
    }

    /// Where its state is kept.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its `/varz` counters, when it was started with monitoring on
    /// (`http: 127.0.0.1:-1` among the extra settings): read from the
    /// monitoring port its ports file names, with a plain HTTP/1.0 GET
    /// (loopback, unauthenticated; no client library needed).
    pub fn varz(&self) -> std::io::Result<serde_json::Value> {
        use std::io::{Read, Write};
        let ports = self.dir.join(format!("nats-server_{}.ports", self.pid()));
        let ports: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(ports)?)?;
        let host = ports["monitoring"][0]
            .as_str()
            .and_then(|url| url.strip_prefix("http://"))
            .ok_or_else(|| std::io::Error::other("the server was started without monitoring"))?
            .to_string();
        let mut stream = std::net::TcpStream::connect(&host)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET /varz HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (_, body) = response
            .split_once("\r\n\r\n")
            .ok_or_else(|| std::io::Error::other("an HTTP answer without a body"))?;
        Ok(serde_json::from_str(body)?)
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
