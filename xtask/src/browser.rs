//! The browser the dashboard test drives: Debian's `chromium` and its
//! `chromium-driver` (chromedriver), installed with apt-get when missing.
//! Both come from the same Debian package version, so driver and browser
//! always match.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// Installs chromium and chromedriver when `/usr/bin/chromedriver` is
/// missing, and returns the environment the dashboard test reads
/// (`DWCP_CHROMEDRIVER`, `DWCP_CHROMIUM`).
pub fn install() -> anyhow::Result<Vec<(String, OsString)>> {
    if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
        eprintln!("installing Debian's chromium and chromium-driver (the dashboard test)");
        // A fresh container has no package lists: an install would find nothing.
        let lists_empty = std::fs::read_dir("/var/lib/apt/lists")
            .map(|entries| {
                !entries
                    .flatten()
                    .any(|e| e.file_name().to_string_lossy().ends_with("_Packages"))
            })
            .unwrap_or(true);
        if lists_empty {
            apt(&["update"])?;
        }
        let install = || {
            apt(&[
                "install",
                "-y",
                "--no-install-recommends",
                "chromium",
                "chromium-driver",
            ])
        };
        // Stale lists name package versions the mirror no longer has.
        match install() {
            Ok(()) => {}
            Err(_) if !lists_empty => {
                apt(&["update"])?;
                install()?;
            }
            Err(e) => return Err(e),
        }
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

fn apt(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("apt-get")
        .args(args)
        // Never stop to ask (tzdata and friends).
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .with_context(|| format!("cannot run apt-get {}", args.join(" ")))?;
    if !status.success() {
        bail!("apt-get {} failed ({status})", args.join(" "));
    }
    Ok(())
}
