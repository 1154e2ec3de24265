//! What to generate, and the checks that keep every value safe to emit.
//!
//! Every value that reaches a generated file is checked here against a
//! narrow grammar first (DNS labels, `scheme://host:port`, RFC 3986 URL
//! characters, hex digests). The generators rely on that: a value that
//! passed cannot break out of a YAML scalar, an HCL string, a systemd
//! command line, a shell word or a Jinja template.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// The most nodes one generation provisions.
pub const MAX_NODES: u32 = 1000;

/// The longest region name: it is part of object, server and firewall names
/// (`dwcp-REGION-NNN`), which clouds and Kubernetes cap at 52 to 63 characters.
pub const MAX_REGION_LEN: usize = 32;

/// Where the node binary lives on hosts and in images.
pub(crate) const BINARY_PATH: &str = "/usr/local/bin/dwcp";

/// The node's data directory on hosts and in containers.
pub(crate) const DATA_DIR: &str = "/var/lib/dwcp";

/// Where the cluster's CA certificate is placed on hosts and in containers.
pub(crate) const CLUSTER_CA_PATH: &str = "/etc/dwcp/cluster-ca.pem";

/// The cloud a Terraform configuration provisions on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Provider {
    /// Amazon Web Services (EC2).
    Aws,
    /// Google Cloud (Compute Engine).
    Gcp,
    /// Microsoft Azure (virtual machines).
    Azure,
    /// Hetzner Cloud.
    Hetzner,
    /// DigitalOcean (droplets).
    DigitalOcean,
}

impl Provider {
    /// Every provider, in the order the CLI lists them.
    pub const ALL: [Provider; 5] = [
        Provider::Aws,
        Provider::Gcp,
        Provider::Azure,
        Provider::Hetzner,
        Provider::DigitalOcean,
    ];

    /// The provider's name as `--provider` and the assistant's slot take it.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Aws => "aws",
            Provider::Gcp => "gcp",
            Provider::Azure => "azure",
            Provider::Hetzner => "hetzner",
            Provider::DigitalOcean => "digitalocean",
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Provider {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                SpecError::new(
                    "provider",
                    s,
                    "one of aws, gcp, azure, hetzner, digitalocean",
                )
            })
    }
}

/// How Kubernetes runs the nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Workload {
    /// `nodes` pods, each with its own persistent volume for its state.
    #[default]
    StatefulSet,
    /// One pod on every Kubernetes node labelled `dwcp.dev/node=true`, its
    /// state in a host directory.
    DaemonSet,
}

impl Workload {
    /// The workload's name as `--workload` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Workload::StatefulSet => "statefulset",
            Workload::DaemonSet => "daemonset",
        }
    }
}

impl FromStr for Workload {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "statefulset" => Ok(Workload::StatefulSet),
            "daemonset" => Ok(Workload::DaemonSet),
            _ => Err(SpecError::new("workload", s, "statefulset or daemonset")),
        }
    }
}

/// Everything the generators take. Build it with [`GenSpec::default`] and
/// set what the user gave; [`crate::generate`] validates it first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenSpec {
    /// How many nodes (1 to [`MAX_NODES`]); for Ansible, the inventory's size.
    pub nodes: u32,
    /// The DWCP region the nodes join (`dwcp up --region`), a DNS label of at
    /// most [`MAX_REGION_LEN`] characters; `None` leaves the node's default.
    pub region: Option<String>,
    /// The Kubernetes namespace (a DNS label).
    pub namespace: String,
    /// The cloud Terraform provisions on.
    pub provider: Provider,
    /// The cluster's NATS server, `tls://HOST:PORT` or `nats://HOST:PORT`;
    /// `None` runs standalone nodes.
    pub nats_url: Option<String>,
    /// The PEM certificate of the CA that signed the NATS server's certificate.
    pub cluster_ca_pem: Option<String>,
    /// Where hosts download the Linux `dwcp` binary from (Terraform, Ansible);
    /// `None` leaves it a required input of the generated files.
    pub binary_url: Option<String>,
    /// The binary's SHA-256 (64 hex digits), checked after download.
    pub binary_sha256: Option<String>,
    /// The container image (Kubernetes); it must have `dwcp` on its `PATH`.
    pub image: String,
    /// StatefulSet or DaemonSet (Kubernetes).
    pub workload: Workload,
    /// CPU limit per node, a Kubernetes quantity such as `2` or `1500m`.
    pub cpu: String,
    /// Memory limit per node, a Kubernetes quantity such as `2Gi`.
    pub memory: String,
    /// Each StatefulSet node's volume size, a Kubernetes quantity.
    pub storage: String,
    /// The hosts Ansible installs on (host names or IP addresses); empty
    /// names them `dwcp-REGION-N`, to be resolved by DNS or SSH config.
    pub hosts: Vec<String>,
    /// The port apps are served on.
    pub http_port: u16,
    /// The admin API's port (health checks and the `dwcp` CLI).
    pub admin_port: u16,
    /// Serve HTTPS with a self-signed certificate (`dwcp up --tls-self-signed`).
    pub tls_self_signed: bool,
    /// Serve `/metrics` without a token (`dwcp up --metrics-public`).
    pub metrics_public: bool,
}

impl Default for GenSpec {
    fn default() -> Self {
        GenSpec {
            nodes: 3,
            region: None,
            namespace: "dwcp".to_owned(),
            provider: Provider::Aws,
            nats_url: None,
            cluster_ca_pem: None,
            binary_url: None,
            binary_sha256: None,
            image: format!("dwcp:{}", env!("CARGO_PKG_VERSION")),
            workload: Workload::StatefulSet,
            cpu: "2".to_owned(),
            memory: "2Gi".to_owned(),
            storage: "10Gi".to_owned(),
            hosts: Vec::new(),
            http_port: 8080,
            admin_port: 8081,
            tls_self_signed: false,
            metrics_public: false,
        }
    }
}

/// A value the generators refuse, with what they would accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field} `{value}`: expected {allowed}")]
pub struct SpecError {
    /// The input's name, as the CLI flag and the assistant's slot call it.
    pub field: &'static str,
    /// The value given (cut short if long).
    pub value: String,
    /// What is allowed instead.
    pub allowed: String,
}

impl SpecError {
    fn new(field: &'static str, value: &str, allowed: impl Into<String>) -> SpecError {
        // Long or multi-line values (a PEM file) would drown the message.
        let mut shown: String = value.chars().take(80).collect();
        if shown.len() < value.len() {
            shown.push('…');
        }
        SpecError {
            field,
            value: shown.escape_debug().to_string(),
            allowed: allowed.into(),
        }
    }
}

impl GenSpec {
    /// Checks every field; the first bad one is reported.
    pub fn validate(&self) -> Result<(), SpecError> {
        if !(1..=MAX_NODES).contains(&self.nodes) {
            return Err(SpecError::new(
                "nodes",
                &self.nodes.to_string(),
                format!("a whole number from 1 to {MAX_NODES}"),
            ));
        }
        if let Some(region) = &self.region
            && !is_dns_label(region, MAX_REGION_LEN)
        {
            return Err(SpecError::new(
                "region",
                region,
                format!(
                    "a DNS label: 1 to {MAX_REGION_LEN} lowercase letters, digits and hyphens, \
                     starting and ending with a letter or digit (e.g. eu-west)"
                ),
            ));
        }
        if !is_dns_label(&self.namespace, 63) {
            return Err(SpecError::new(
                "namespace",
                &self.namespace,
                "a DNS label: 1 to 63 lowercase letters, digits and hyphens, \
                 starting and ending with a letter or digit",
            ));
        }
        if let Some(url) = &self.nats_url {
            check_nats_url(url)?;
        }
        if let Some(pem) = &self.cluster_ca_pem {
            if self.nats_url.is_none() {
                return Err(SpecError::new(
                    "cluster-ca",
                    "(a certificate)",
                    "a NATS URL (--nats-url) alongside it",
                ));
            }
            check_pem(pem)?;
        }
        if let Some(url) = &self.binary_url {
            check_binary_url(url)?;
        }
        if let Some(digest) = &self.binary_sha256
            && (digest.len() != 64 || !digest.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(SpecError::new(
                "binary-sha256",
                digest,
                "a SHA-256 digest: 64 hexadecimal digits",
            ));
        }
        check_image(&self.image)?;
        for (field, value) in [
            ("cpu", &self.cpu),
            ("memory", &self.memory),
            ("storage", &self.storage),
        ] {
            if !is_quantity(value) {
                return Err(SpecError::new(
                    field,
                    value,
                    "a Kubernetes quantity: a positive number with an optional suffix \
                     m, k, M, G, T, Ki, Mi, Gi or Ti (e.g. 500m, 2, 4Gi)",
                ));
            }
        }
        self.check_hosts()?;
        for (field, port) in [
            ("http-port", self.http_port),
            ("admin-port", self.admin_port),
        ] {
            if port == 0 {
                return Err(SpecError::new(field, "0", "a port from 1 to 65535"));
            }
        }
        if self.http_port == self.admin_port {
            return Err(SpecError::new(
                "admin-port",
                &self.admin_port.to_string(),
                "a port other than the http port",
            ));
        }
        Ok(())
    }

    /// The base of every generated name: `dwcp`, or `dwcp-REGION`.
    pub(crate) fn base_name(&self) -> String {
        match &self.region {
            Some(region) => format!("dwcp-{region}"),
            None => "dwcp".to_owned(),
        }
    }

    fn check_hosts(&self) -> Result<(), SpecError> {
        if self.hosts.is_empty() {
            return Ok(());
        }
        if self.hosts.len() != self.nodes as usize {
            return Err(SpecError::new(
                "hosts",
                &self.hosts.join(","),
                format!(
                    "as many hosts as nodes ({}), or no --nodes with --hosts",
                    self.nodes
                ),
            ));
        }
        for (i, host) in self.hosts.iter().enumerate() {
            if !is_host(host) {
                return Err(SpecError::new(
                    "hosts",
                    host,
                    "host names (letters, digits, hyphens and dots) or IP addresses",
                ));
            }
            if self.hosts[..i].contains(host) {
                return Err(SpecError::new("hosts", host, "each host once"));
            }
        }
        Ok(())
    }
}

/// A DNS label (RFC 1123) of lowercase ASCII, at most `max` long.
pub(crate) fn is_dns_label(s: &str, max: usize) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= max
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A DNS name of letters, digits, hyphens and dots, or an IP address.
fn is_host(s: &str) -> bool {
    if s.parse::<Ipv4Addr>().is_ok() || s.parse::<Ipv6Addr>().is_ok() {
        return true;
    }
    s.len() <= 253
        && s.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

fn check_nats_url(url: &str) -> Result<(), SpecError> {
    let bad = || {
        SpecError::new(
            "nats-url",
            url,
            "tls://HOST:PORT or nats://HOST:PORT (HOST a DNS name or an IP address, \
             IPv6 in brackets)",
        )
    };
    let rest = url
        .strip_prefix("tls://")
        .or_else(|| url.strip_prefix("nats://"))
        .ok_or_else(bad)?;
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port_ok = !port.is_empty()
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().is_ok(),
        None => is_host(host) && !host.contains(':'),
    };
    if port_ok && host_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

fn check_binary_url(url: &str) -> Result<(), SpecError> {
    let bad = || {
        SpecError::new(
            "binary-url",
            url,
            "an http:// or https:// URL of RFC 3986 characters (no spaces, quotes, \
             braces or backslashes)",
        )
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    // RFC 3986's unreserved and reserved characters and `%`: nothing that a
    // shell, YAML, HCL's `${`/`%{` or Jinja's `{{` could act on unquoted
    // survives this, so the URL can go anywhere as a plain string.
    let allowed = |c: u8| c.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&c);
    let host_present = rest
        .split(['/', '?', '#'])
        .next()
        .is_some_and(|h| !h.is_empty());
    if host_present && url.len() <= 2048 && url.bytes().all(allowed) {
        Ok(())
    } else {
        Err(bad())
    }
}

fn check_image(image: &str) -> Result<(), SpecError> {
    // The reference grammar's characters: registry/path:tag@digest.
    let allowed = |c: u8| c.is_ascii_alphanumeric() || b"-._/:@".contains(&c);
    let ok = !image.is_empty()
        && image.len() <= 255
        && image.bytes().all(allowed)
        && image.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(SpecError::new(
            "image",
            image,
            "an image reference such as registry.example/dwcp:0.1.0 (letters, digits, \
             and - . _ / : @)",
        ))
    }
}

fn check_pem(pem: &str) -> Result<(), SpecError> {
    // Only certificate blocks of base64 lines: the file is copied verbatim
    // into YAML, HCL and a Jinja-templated task, so nothing else may appear.
    let bad = || {
        SpecError::new(
            "cluster-ca",
            pem,
            "PEM certificates (-----BEGIN CERTIFICATE----- … -----END CERTIFICATE-----)",
        )
    };
    let mut inside = false;
    let mut blocks = 0;
    for line in pem.lines().map(str::trim_end) {
        match line {
            "-----BEGIN CERTIFICATE-----" if !inside => inside = true,
            "-----END CERTIFICATE-----" if inside => {
                inside = false;
                blocks += 1;
            }
            "" if !inside => {}
            body if inside
                && body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)) => {}
            _ => return Err(bad()),
        }
    }
    if blocks > 0 && !inside {
        Ok(())
    } else {
        Err(bad())
    }
}

/// A Kubernetes resource quantity in the forms worth writing by hand.
fn is_quantity(s: &str) -> bool {
    let suffixes = ["Ki", "Mi", "Gi", "Ti", "m", "k", "M", "G", "T", ""];
    let Some(number) = suffixes.iter().find_map(|suffix| s.strip_suffix(suffix)) else {
        return false;
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, "0"));
    let digits = |d: &str| !d.is_empty() && d.len() <= 12 && d.bytes().all(|b| b.is_ascii_digit());
    digits(whole) && digits(fraction) && number.bytes().any(|b| (b'1'..=b'9').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        for ok in ["2", "500m", "1.5", "2Gi", "10Gi", "512Mi", "1k"] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in ["", "0", "-1", "2gi", "Gi", "1.", ".5", "1e3", "2 Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn nats_urls() {
        for ok in [
            "tls://nats.example:4222",
            "nats://10.0.0.1:4222",
            "tls://[::1]:4222",
        ] {
            assert!(check_nats_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://x:4222",
            "tls://x",
            "tls://:4222",
            "tls://x:0",
            "tls://x:99999",
            "tls://x y:4222",
            "tls://::1:4222",
            "tls://x:42a",
        ] {
            assert!(check_nats_url(bad).is_err(), "{bad}");
        }
    }
}
