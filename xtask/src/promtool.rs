//! `promtool`, which checks and unit-tests `deploy/prometheus/alerts.yml`
//! in the observability test: Debian's `prometheus` package, installed with
//! apt-get when no `promtool` is on the PATH.

use anyhow::Context;
use std::ffi::OsString;
use std::path::PathBuf;

/// Finds `promtool` (`DWCP_PROMTOOL`, else the PATH), installing Debian's
/// `prometheus` package when there is none, and returns the environment the
/// observability test reads (`DWCP_PROMTOOL`).
pub fn install() -> anyhow::Result<Vec<(String, OsString)>> {
    if let Some(given) = std::env::var_os("DWCP_PROMTOOL") {
        return Ok(vec![("DWCP_PROMTOOL".into(), given)]);
    }
    if let Some(found) = on_path() {
        return Ok(vec![("DWCP_PROMTOOL".into(), found.into_os_string())]);
    }
    eprintln!("installing Debian's prometheus package (promtool, for the alert rules' tests)");
    crate::apt::install(&["prometheus"])?;
    let found = on_path()
        .context("the prometheus package is installed, but promtool is not on the PATH")?;
    Ok(vec![("DWCP_PROMTOOL".into(), found.into_os_string())])
}

/// The first `promtool` file on the PATH.
fn on_path() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("promtool"))
        .find(|candidate| candidate.is_file())
}
