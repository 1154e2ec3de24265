//! The browser the dashboard test drives: Debian's `chromium` and its
//! `chromium-driver` (chromedriver), installed with apt-get when missing.
//! Both come from the same Debian package version, so driver and browser
//! always match.

use std::ffi::OsString;
use std::path::Path;

use anyhow::bail;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs chromium and chromedriver when `/usr/bin/chromedriver` is
/// missing, and returns the environment the dashboard test reads
/// (`DWCP_CHROMEDRIVER`, `DWCP_CHROMIUM`).
pub fn install() -> anyhow::Result<Vec<(String, OsString)>> {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        eprintln!("installing Debian's chromium and chromium-driver (the dashboard test)");
        crate::apt::install(&["chromium", "chromium-driver"])?;
    }
    for path in [CHROMEDRIVER, CHROMIUM] {
        if !Path::new(path).exists() {
            bail!("{path} is still missing after apt-get install");
        }
    }
    Ok(vec![
        ("DWCP_CHROMEDRIVER".into(), CHROMEDRIVER.into()),
        ("DWCP_CHROMIUM".into(), CHROMIUM.into()),
    ])
}
