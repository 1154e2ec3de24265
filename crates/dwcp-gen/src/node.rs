//! How a node is started on a host: the `dwcp up` flags, the environment
//! file and the systemd unit shared by the Terraform and Ansible targets.

use crate::spec::{BINARY_PATH, CLUSTER_CA_PATH, DATA_DIR, GenSpec};

/// The environment file the unit reads (`DWCP_ADMIN`, `DWCP_DATA_DIR`).
pub(crate) const ENV_PATH: &str = "/etc/dwcp/dwcp.env";

/// Where the unit is installed.
pub(crate) const UNIT_PATH: &str = "/etc/systemd/system/dwcp.service";

/// The flags after `dwcp up`. `node_id` is passed only with a cluster:
/// without one the node has no use for it, and its default (the host name)
/// is already unique on hosts.
pub(crate) fn up_flags(spec: &GenSpec, node_id: Option<&str>, ca_path: &str) -> Vec<String> {
    let mut flags = vec![
        "up".to_owned(),
        "--http".to_owned(),
        format!("0.0.0.0:{}", spec.http_port),
    ];
    if spec.tls_self_signed {
        flags.push("--tls-self-signed".to_owned());
    }
    if spec.metrics_public {
        flags.push("--metrics-public".to_owned());
    }
    if let Some(url) = &spec.nats_url {
        flags.extend(["--cluster".to_owned(), url.clone()]);
        if spec.cluster_ca_pem.is_some() {
            flags.extend(["--cluster-ca".to_owned(), ca_path.to_owned()]);
        }
        if let Some(id) = node_id {
            flags.extend(["--node-id".to_owned(), id.to_owned()]);
        }
    }
    if let Some(region) = &spec.region {
        flags.extend(["--region".to_owned(), region.clone()]);
    }
    flags
}

/// The environment file: the global flags `dwcp` reads from the environment.
pub(crate) fn env_file(spec: &GenSpec) -> String {
    format!(
        "# Read by dwcp.service; `dwcp` takes these as --admin and --data-dir.\n\
         DWCP_ADMIN=0.0.0.0:{}\n\
         DWCP_DATA_DIR={DATA_DIR}\n",
        spec.admin_port
    )
}

/// The systemd unit. Every word of `ExecStart` comes from a validated value
/// (no spaces, quotes, `$` or `%`), so none needs quoting.
pub(crate) fn systemd_unit(spec: &GenSpec) -> String {
    let exec = std::iter::once(BINARY_PATH.to_owned())
        .chain(up_flags(spec, None, CLUSTER_CA_PATH))
        .collect::<Vec<_>>()
        .join(" ");
    // Binding a port below 1024 needs the capability; nothing else does.
    let bind = if spec.http_port < 1024 || spec.admin_port < 1024 {
        "AmbientCapabilities=CAP_NET_BIND_SERVICE\nCapabilityBoundingSet=CAP_NET_BIND_SERVICE\n"
    } else {
        "CapabilityBoundingSet=\n"
    };
    format!(
        "[Unit]\n\
         Description=DWCP node\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         \n\
         [Service]\n\
         EnvironmentFile={ENV_PATH}\n\
         ExecStart={exec}\n\
         # A user of its own, made at start; the state directory is {DATA_DIR}.\n\
         DynamicUser=yes\n\
         StateDirectory=dwcp\n\
         StateDirectoryMode=0700\n\
         {bind}\
         NoNewPrivileges=yes\n\
         ProtectSystem=strict\n\
         ProtectHome=yes\n\
         PrivateTmp=yes\n\
         LimitNOFILE=65536\n\
         Restart=on-failure\n\
         RestartSec=2s\n\
         # In-flight requests get the node's drain timeout (30 s) to finish.\n\
         TimeoutStopSec=45s\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

/// A shell loop that waits until the admin API answers `path` (at most
/// about two minutes), for boot scripts.
pub(crate) fn wait_for(spec: &GenSpec, path: &str) -> String {
    format!(
        "i=0; until curl -fsS -o /dev/null http://127.0.0.1:{}{path}; do \
         i=$((i+1)); [ \"$i\" -lt 60 ] || exit 1; sleep 2; done",
        spec.admin_port
    )
}
