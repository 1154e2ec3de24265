//! Generates what it takes to run DWCP nodes on existing infrastructure:
//! Kubernetes manifests ([`Target::K8s`]), a Terraform configuration for
//! one of five clouds ([`Target::Terraform`]) and an Ansible playbook for
//! existing hosts ([`Target::Ansible`]).
//!
//! The input is a [`GenSpec`]; [`generate`] validates it (every value is
//! checked against a narrow grammar, so no value can break the syntax of a
//! generated file) and returns the files as [`GeneratedFile`]s with
//! relative paths. The library does no I/O: `dwcp gen` writes the files.
//!
//! Nothing is produced from text templates. Kubernetes objects are
//! k8s-openapi's typed structs, Terraform is built with hcl-rs's structure
//! and expression types, Ansible's YAML is serialized from values; each
//! serializer escapes what it writes. Generated Terraform is also checked
//! against the provider schema subsets in `schema/` ([`schema::check`])
//! before it is returned. The tests run the official checkers on the output
//! too: kubernetes-validate, python-hcl2 and `ansible-playbook --syntax-check`.

#![warn(missing_docs)]

mod ansible;
mod k8s;
mod node;
pub mod schema;
mod spec;
mod terraform;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

pub use ansible::GROUP as ANSIBLE_GROUP;
pub use k8s::DAEMONSET_NODE_LABEL;
pub use spec::{GenSpec, MAX_NODES, MAX_REGION_LEN, Provider, SpecError, Workload};

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// A Terraform configuration for [`GenSpec::provider`].
    Terraform,
    /// Kubernetes manifests.
    K8s,
    /// An Ansible inventory and playbook.
    Ansible,
}

impl Target {
    /// Every target.
    pub const ALL: [Target; 3] = [Target::Terraform, Target::K8s, Target::Ansible];

    /// The target's name, as `dwcp gen` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Target::Terraform => "terraform",
            Target::K8s => "k8s",
            Target::Ansible => "ansible",
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Target {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Target::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| SpecError {
                field: "target",
                value: s.escape_debug().to_string(),
                allowed: "terraform, k8s or ansible".to_owned(),
            })
    }
}

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Where it goes, relative to the output directory.
    pub path: PathBuf,
    /// Its text.
    pub contents: String,
}

impl GeneratedFile {
    fn new(path: impl Into<PathBuf>, contents: String) -> GeneratedFile {
        GeneratedFile {
            path: path.into(),
            contents,
        }
    }
}

/// Why nothing was generated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An input is out of range or malformed.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// A serializer failed or the output failed its own checks: a bug here.
    #[error("internal error in dwcp-gen (please report it): {0}")]
    Internal(String),
}

/// Validates `spec` and generates `target`'s files.
pub fn generate(target: Target, spec: &GenSpec) -> Result<Vec<GeneratedFile>, Error> {
    spec.validate()?;
    match target {
        Target::K8s => k8s::generate(spec),
        Target::Ansible => ansible::generate(spec),
        Target::Terraform => {
            let files = terraform::generate(spec)?;
            // Cheap, and it keeps a generator bug from reaching a user's cloud.
            schema::check(spec.provider, &files).map_err(|problems| {
                Error::Internal(format!(
                    "generated Terraform fails its schema check: {}",
                    problems.join("; ")
                ))
            })?;
            Ok(files)
        }
    }
}
