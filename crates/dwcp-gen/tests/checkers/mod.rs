//! The official checkers the generated files must pass, found through
//! `DWCP_PYCHECKERS` (a `pip install --target` directory, as `cargo xtask
//! test` installs it) or else in the Python on `PATH`. A checker that is
//! missing is reported and its check skipped: CI always has all three.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version the manifests are checked against: the oldest
/// that k8s-openapi types them for (its `v1_33` feature).
pub const KUBERNETES_VERSION: &str = "1.33.0";

/// The Python checkers, each present or not.
pub struct Checkers {
    pythonpath: Option<OsString>,
    /// kubernetes-validate is importable.
    pub kubernetes_validate: bool,
    /// python-hcl2 is importable.
    pub hcl2: bool,
    /// ansible-core is importable.
    pub ansible: bool,
}

impl Checkers {
    /// Looks for the checkers once; prints a notice for each one missing.
    pub fn find() -> Checkers {
        let pythonpath = std::env::var_os("DWCP_PYCHECKERS").map(|dir| {
            let mut path = dir;
            if let Some(existing) = std::env::var_os("PYTHONPATH") {
                path.push(":");
                path.push(existing);
            }
            path
        });
        let mut checkers = Checkers {
            pythonpath,
            kubernetes_validate: false,
            hcl2: false,
            ansible: false,
        };
        checkers.kubernetes_validate =
            checkers.importable("kubernetes_validate", "kubernetes-validate");
        checkers.hcl2 = checkers.importable("hcl2", "python-hcl2");
        checkers.ansible = checkers.importable("ansible.cli.playbook", "ansible-core");
        checkers
    }

    fn importable(&self, module: &str, package: &str) -> bool {
        let ok = self
            .python()
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|out| out.status.success());
        if !ok {
            eprintln!(
                "NOTICE: {package} is missing (set DWCP_PYCHECKERS or pip install {package}); \
                 its check is SKIPPED"
            );
        }
        ok
    }

    fn python(&self) -> Command {
        let mut cmd = Command::new("python3");
        if let Some(path) = &self.pythonpath {
            cmd.env("PYTHONPATH", path);
        }
        cmd
    }

    /// Checks multi-document Kubernetes YAML files against the official
    /// schemas, rejecting unknown fields.
    pub fn kubernetes(&self, files: &[PathBuf]) {
        if !self.kubernetes_validate || files.is_empty() {
            return;
        }
        let mut cmd = self.python();
        cmd.args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--quiet",
            "-k",
            KUBERNETES_VERSION,
        ]);
        cmd.args(files);
        run(cmd, "kubernetes-validate");
    }

    /// Parses `.tf` files with python-hcl2.
    pub fn terraform(&self, files: &[PathBuf]) {
        if !self.hcl2 || files.is_empty() {
            return;
        }
        let mut cmd = self.python();
        cmd.args([
            "-c",
            "import sys, hcl2\n\
             for path in sys.argv[1:]:\n\
             \x20   with open(path) as f:\n\
             \x20       body = hcl2.load(f)\n\
             \x20   assert body, path\n",
        ]);
        cmd.args(files);
        run(cmd, "python-hcl2");
    }

    /// Runs `ansible-playbook --syntax-check` on playbooks, each with the
    /// inventory beside it; an inventory that does not parse fails too.
    pub fn ansible(&self, dirs: &[PathBuf], scratch: &Path) {
        if !self.ansible || dirs.is_empty() {
            return;
        }
        let mut cmd = self.python();
        cmd.args(["-m", "ansible.cli.playbook", "--syntax-check"])
            .env("ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED", "true")
            .env("ANSIBLE_HOME", scratch.join("ansible-home"))
            .env("ANSIBLE_LOCAL_TEMP", scratch.join("ansible-tmp"))
            .env("ANSIBLE_NOCOLOR", "1");
        for dir in dirs {
            cmd.arg("-i").arg(dir.join("inventory.yml"));
        }
        for dir in dirs {
            cmd.arg(dir.join("playbook.yml"));
        }
        run(cmd, "ansible-playbook --syntax-check");
    }
}

fn run(mut cmd: Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what} did not start: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
