//! The Python checkers `dwcp-gen`'s tests run generated files through:
//! kubernetes-validate (Kubernetes objects against the official schemas,
//! which the package bundles, so it works offline), python-hcl2 (a second,
//! independent HCL parser) and ansible-core (`ansible-playbook
//! --syntax-check`). They go to `target/tools/pycheckers` with pinned
//! versions, so the tests never depend on what else is installed.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The pinned packages and a module each, imported to see it is there.
const PACKAGES: [(&str, &str); 3] = [
    ("kubernetes-validate==1.37.0", "kubernetes_validate"),
    ("python-hcl2==8.1.4", "hcl2"),
    ("ansible-core==2.19.14", "ansible.cli.playbook"),
];

/// Installs the checkers under `root/target/tools/pycheckers` when any is
/// missing, and returns the environment the tests need (`DWCP_PYCHECKERS`).
pub fn install(root: &Path) -> anyhow::Result<Vec<(String, std::ffi::OsString)>> {
    let dir = root.join("target/tools/pycheckers");
    let importable = |module: &str| {
        Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .env("PYTHONPATH", &dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !PACKAGES.iter().all(|(_, module)| importable(module)) {
        eprintln!(
            "installing the generated-file checkers into {} ({})",
            dir.display(),
            PACKAGES.map(|(p, _)| p).join(", ")
        );
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--upgrade",
                "--target",
            ])
            .arg(&dir)
            .args(PACKAGES.map(|(p, _)| p))
            .status()
            .context("running python3 -m pip")?;
        if !status.success() {
            bail!("pip could not install the checkers ({status})");
        }
        if let Some((package, _)) = PACKAGES.iter().find(|(_, module)| !importable(module)) {
            bail!(
                "{package} installed, but it cannot be imported from {}",
                dir.display()
            );
        }
    }
    Ok(vec![("DWCP_PYCHECKERS".to_owned(), OsString::from(dir))])
}
