//! `dwcp up`: run a node in this process until SIGTERM or Ctrl-C.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use dwcp_node::{Node, NodeConfig};
use dwcp_runtime::RuntimeSettings;

use crate::cli::UpArgs;

/// Parses `64MiB`-style sizes.
pub fn parse_size(flag: &str, s: &str) -> anyhow::Result<u64> {
    s.trim()
        .parse::<bytesize::ByteSize>()
        .map(|b| b.as_u64())
        .map_err(|e| anyhow::anyhow!("{flag} `{s}`: {e} (write it as `64MiB` or `1GiB`)"))
}

/// Sets up logging on stderr: `DWCP_LOG` (or `RUST_LOG`) filters, default
/// `info`; `json` writes one JSON object per line (fields flattened, for log
/// shippers), `text` lines for people, colored only on a terminal. Lines are
/// written by a thread of their own: a slow reader of stderr (a full pipe)
/// must not stall the threads that serve requests; if it falls far behind,
/// lines are dropped rather than waited for. Keep the guard until exit:
/// dropping it writes out what is buffered.
pub fn init_logging(json: bool) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = std::env::var("DWCP_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(writer);
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
    guard
}

/// The node's id (default the host name), region and labels.
fn identity(args: &UpArgs) -> anyhow::Result<dwcp_node::cluster::Identity> {
    let node_id = match &args.node_id {
        Some(id) => id.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "node".into()),
    };
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && !s.starts_with('.')
            && !s.ends_with('.')
    };
    anyhow::ensure!(
        name_ok(&node_id),
        "--node-id `{node_id}`: 1 to 63 of letters, digits, `-`, `_`, `.` (not at either end)"
    );
    anyhow::ensure!(
        name_ok(&args.region),
        "--region `{}`: 1 to 63 of letters, digits, `-`, `_`, `.`",
        args.region
    );
    let mut labels = std::collections::BTreeMap::new();
    for pair in args
        .labels
        .iter()
        .flat_map(|l| l.split(','))
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair
            .split_once('=')
            .filter(|(k, _)| name_ok(k))
            .with_context(|| format!("--labels: `{pair}` is not KEY=VALUE"))?;
        labels.insert(k.to_string(), v.to_string());
    }
    Ok(dwcp_node::cluster::Identity {
        node_id,
        region: args.region.clone(),
        labels,
    })
}

/// Starts the node, prints the `ready` line, waits for a signal, drains.
pub fn run(args: UpArgs, admin: &str, data_dir: PathBuf) -> anyhow::Result<()> {
    let _log_guard = init_logging(args.log_format == "json");
    let mut config = NodeConfig::new(data_dir.clone());
    config.http = args.http;
    config.otlp_endpoint = args.otlp_endpoint.clone();
    config.identity = identity(&args)?;
    config.cluster = match &args.cluster {
        Some(url) => Some(dwcp_node::cluster::ClusterSettings {
            url: url.clone(),
            ca_pem: match &args.cluster_ca {
                Some(path) => Some(
                    std::fs::read(path)
                        .with_context(|| format!("--cluster-ca: cannot read {}", path.display()))?,
                ),
                None => None,
            },
            domain: args.cluster_domain.clone(),
        }),
        None => None,
    };
    config.peer = args.peer;
    config.demand_window = humantime::parse_duration(&args.demand_window)
        .ok()
        .filter(|d| d.as_secs() >= 10)
        .with_context(|| {
            format!(
                "--demand-window `{}`: give a duration of at least 10s (`5m`, `1h`)",
                args.demand_window
            )
        })?;
    let admin_addr = admin
        .strip_prefix("http://")
        .or_else(|| admin.strip_prefix("https://"))
        .unwrap_or(admin)
        .trim_end_matches('/');
    config.admin = admin_addr.parse().with_context(|| {
        format!("--admin `{admin}`: expected an address such as 127.0.0.1:8081")
    })?;
    if let Some(workers) = args.workers {
        config.workers = workers;
    }
    if let Some(jobs) = args.compile_jobs {
        config.compile_jobs = jobs.max(1);
    }
    config.domain = args.domain.trim_matches('.').to_ascii_lowercase();
    config.max_upload = parse_size("--max-upload", &args.max_upload)? as usize;
    config.drain_timeout = humantime::parse_duration(&args.drain_timeout)
        .with_context(|| format!("--drain-timeout `{}`", args.drain_timeout))?;
    config.log_bytes_per_app = parse_size("--log-buffer", &args.log_buffer)? as usize;
    if args.keep_versions == 0 {
        anyhow::bail!("--keep-versions must be at least 1");
    }
    config.keep_versions = args.keep_versions;
    config.audit_retention =
        humantime::parse_duration(&args.audit_retention).with_context(|| {
            format!(
                "--audit-retention `{}`: write it as `30d` or `12h`",
                args.audit_retention
            )
        })?;
    config.metrics_public = args.metrics_public;
    config.tls = tls_config(&args, &data_dir)?;
    config.admin_tls = args.admin_tls;
    config.node_key_rotation = match args.node_key_rotation.as_str() {
        "never" => None,
        d => Some(humantime::parse_duration(d).with_context(|| {
            format!("--node-key-rotation `{d}`: write it as `30d`, `12h` or `never`")
        })?),
    };
    config.flags_fractional = match args.flags_fractional.as_str() {
        "v1" => dwcp_release::flags::FractionalVersion::V1,
        _ => dwcp_release::flags::FractionalVersion::V2,
    };
    config.runtime = RuntimeSettings {
        pool_instances: args.pool_instances,
        max_memory: parse_size("--pool-max-memory", &args.pool_max_memory)?,
        keep_resident: parse_size("--keep-resident", &args.keep_resident)? as usize,
        ..RuntimeSettings::default()
    };
    if let Some(archive) = &args.restore {
        let manifest = dwcp_node::restore(archive, &data_dir)
            .with_context(|| format!("cannot restore from {}", archive.display()))?;
        tracing::info!(
            tenants = manifest.tenants,
            apps = manifest.apps,
            versions = manifest.versions,
            taken_at = manifest.created_at,
            "restored from {}",
            archive.display()
        );
    }
    let (config_tls, args_admin_tls) = (config.tls.is_some(), config.admin_tls);
    let node = Node::start(config)?;
    if node.created_admin_token {
        tracing::info!(
            "wrote the node's admin token to {} (0600); the CLI reads it from there",
            data_dir.join(dwcp_node::ADMIN_TOKEN_FILE).display()
        );
    }
    {
        let mut out = std::io::stdout().lock();
        let scheme = |tls: bool| if tls { "https" } else { "http" };
        let https = config_tls;
        writeln!(
            out,
            "dwcp ready: http={}://{} admin={}://{} apps={} data={}",
            scheme(https),
            node.http_addr,
            scheme(https && args_admin_tls),
            node.admin_addr,
            node.apps_loaded,
            data_dir.display()
        )?;
        out.flush()?;
    }
    wait_for_signal()?;
    tracing::info!("stopping: finishing in-flight requests");
    node.stop();
    tracing::info!("stopped");
    Ok(())
}

fn wait_for_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    })?;
    Ok(())
}

/// The TLS configuration `--tls-cert/--tls-key` or `--tls-self-signed` ask
/// for: `X25519MLKEM768` preferred, classical groups still offered.
fn tls_config(
    args: &UpArgs,
    data_dir: &std::path::Path,
) -> anyhow::Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
    let (cert, key) = if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let read = |p: &std::path::Path| {
            std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))
        };
        (read(cert)?, read(key)?)
    } else if args.tls_self_signed {
        // Kept across restarts, so that clients can pin it.
        let dir = data_dir.join("tls");
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        if !cert_path.exists() || !key_path.exists() {
            let (cert, key) =
                dwcp_crypto::tls::self_signed(&["localhost", "*.localhost", "127.0.0.1"])?;
            dwcp_store::write_private(&key_path, key.as_bytes())?;
            dwcp_store::write_atomically(&cert_path, cert.as_bytes())?;
            tracing::info!(
                "wrote a self-signed certificate to {} (trust it in clients, e.g. curl --cacert)",
                cert_path.display()
            );
        }
        (std::fs::read(&cert_path)?, std::fs::read(&key_path)?)
    } else {
        return Ok(None);
    };
    let (certs, key) = dwcp_crypto::tls::parse_pem(&cert, &key)?;
    Ok(Some(dwcp_crypto::tls::ingress_server_config(certs, key)?))
}
