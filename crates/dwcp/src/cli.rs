//! The command line, as clap parses it.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// DWCP runs tenants' WebAssembly components (wasi:http/proxy).
#[derive(Parser, Debug)]
#[command(name = "dwcp", version, about, long_about = None)]
pub struct Cli {
    /// The admin API: the node to manage, or for `dwcp up` the address to
    /// listen on (`127.0.0.1:8081` and `http://127.0.0.1:8081` both work).
    #[arg(
        long,
        global = true,
        env = "DWCP_ADMIN",
        default_value = "http://127.0.0.1:8081"
    )]
    pub admin: String,
    /// Bearer token for the admin API.
    #[arg(long, global = true, env = "DWCP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Tenant for commands that take one and were given none.
    #[arg(long, global = true, env = "DWCP_TENANT", default_value = "default")]
    pub tenant: String,
    /// Data directory (default: $XDG_DATA_HOME/dwcp, i.e. ~/.local/share/dwcp).
    #[arg(long, global = true, env = "DWCP_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Start a node: serve the stored apps and the admin API.
    ///
    /// Example: dwcp up --http 127.0.0.1:8080 --admin 127.0.0.1:8081
    Up(UpArgs),
    /// Upload a component as a new version of an app and switch traffic to it.
    ///
    /// Example: dwcp deploy demo/hello target/examples/hello.wasm --memory 64MiB --deadline 1s
    Deploy(DeployArgs),
    /// List apps (all, or one tenant's).
    ///
    /// Example: dwcp apps list demo --json
    Apps(AppsArgs),
    /// Show one app: its serving version, limits and load.
    ///
    /// Example: dwcp status demo/hello
    Status(AppArg),
    /// List an app's versions.
    ///
    /// Example: dwcp versions demo/hello --json
    Versions(AppArg),
    /// Checkpoint a stateful app's live keys now (one key with --key).
    ///
    /// Example: dwcp snapshot demo/counter --key alice
    Snapshot(KeyArgs),
    /// List a stateful app's checkpoints (one key's with --key).
    ///
    /// Example: dwcp snapshots demo/counter --key alice
    Snapshots(KeyArgs),
    /// Put a stateful app's keys (one with --key) back to a checkpoint: its
    /// sequence number from `dwcp snapshots`, or the latest one.
    ///
    /// Example: dwcp restore demo/counter --key alice 12
    Restore(RestoreArgs),
    /// Delete an app with its versions, artifacts and compiled code.
    ///
    /// Example: dwcp delete demo/hello
    Delete(AppName),
    /// Recycle an app's instances (in-flight requests finish).
    ///
    /// Example: dwcp restart demo/hello
    Restart(AppName),
    /// An app's config values, given to its guests as environment variables.
    ///
    /// Example: dwcp config set demo/hello GREETING=hi
    #[command(subcommand)]
    Config(ConfigCommand),
    /// An app's secrets: sealed at rest, given to its guests as environment variables, never shown.
    ///
    /// Example: dwcp secrets set demo/hello API_TOKEN=@token.txt
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// The audit log: every admin action with its outcome.
    ///
    /// Example: dwcp audit --since 1h
    Audit {
        /// Only entries younger than this (`30m`, `2h`, `7d`).
        #[arg(long)]
        since: Option<String>,
        /// Print JSON: an array of {at, token, action, status}.
        #[arg(long)]
        json: bool,
    },
    /// What an app's guests wrote to stdout and stderr (and why the node stopped them).
    ///
    /// Example: dwcp logs demo/hello --since 5m --follow
    Logs(LogsArgs),
    /// Requests/s, p50/p99 latency, error rate and cold starts over the last minutes.
    ///
    /// Example: dwcp metrics demo/hello --window 1m
    Metrics(MetricsArgs),
    /// Write a consistent copy of the node's state (apps, versions, settings, config,
    /// sealed secrets, audit log) to FILE while it serves.
    ///
    /// Example: dwcp backup node.backup.tar   (restore: dwcp up --restore node.backup.tar)
    Backup {
        /// Where to write the archive (a tar file).
        file: PathBuf,
    },
    /// Remove old versions past retention, files no version uses, old audit entries.
    ///
    /// Example: dwcp gc --dry-run
    Gc {
        /// Only list what would be removed.
        #[arg(long)]
        dry_run: bool,
        /// Print JSON (fields in docs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Tenants and their quotas.
    ///
    /// Example: dwcp tenants quota acme --memory 2GiB --instances 50
    #[command(subcommand)]
    Tenants(TenantsCommand),
    /// Signing keys and the trust manifest: publisher keys, the root that signs the manifest.
    ///
    /// Example: dwcp keys gen --publisher acme
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Sign a component for TENANT/APP VERSION into FILE.wasm.sig, to deploy later
    /// (`dwcp deploy --signature`) or check (`dwcp verify`).
    ///
    /// Example: dwcp sign demo/hello hello.wasm --version v7 --key keys/acme.key
    Sign {
        /// TENANT/APP.
        app: String,
        /// The component.
        file: PathBuf,
        /// The version it is for.
        #[arg(long)]
        version: String,
        /// The publisher key (default: DATA_DIR/keys/local.key).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// Where to write the signature (default: FILE.sig).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// Check a component's signature (FILE.wasm.sig) against the node's root-signed
    /// trust manifest.
    ///
    /// Example: dwcp verify hello.wasm
    Verify {
        /// The component.
        file: PathBuf,
        /// The signature (default: FILE.sig).
        #[arg(long, value_name = "FILE.sig")]
        signature: Option<PathBuf>,
        /// Print JSON: {ok, key_id, name, status, tenant, app, version, sha256, reason}.
        #[arg(long)]
        json: bool,
    },
    /// Admin API tokens: node-wide, or scoped to one tenant.
    ///
    /// Example: dwcp tokens create --tenant acme --name ci
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// A tenant's feature flags (flagd's format), evaluated over OFREP and for its apps.
    ///
    /// Example: dwcp --tenant demo flags rollout new-checkout 25
    #[command(subcommand)]
    Flags(crate::flags::FlagsCommand),
    /// Progressive rollouts: canary and blue-green, with automatic rollback.
    ///
    /// Example: dwcp rollout status demo/shop
    #[command(subcommand)]
    Rollout(crate::rollout::RolloutCommand),
    /// A/B experiments between the stable version and another.
    ///
    /// Example: dwcp experiment results demo/shop
    #[command(subcommand)]
    Experiment(crate::experiment::ExperimentCommand),
    /// Say what to do in plain English: shows the equivalent command, asks before
    /// destructive ones, then runs it. Offline; `--dry-run --json` needs no node.
    ///
    /// Example: dwcp ask "send 10% of shop's traffic to v3"
    Ask(crate::ask::AskArgs),
    /// Generate what runs DWCP nodes on existing infrastructure: Terraform, Kubernetes or Ansible.
    ///
    /// Example: dwcp gen k8s --nodes 3 --namespace edge --nats-url tls://nats.edge.svc:4222
    #[command(subcommand)]
    Gen(crate::r#gen::GenCommand),
    /// The cluster's nodes as the node spoken to sees them (`list` by default).
    ///
    /// Example: dwcp nodes list --region eu-west
    Nodes {
        #[command(subcommand)]
        command: Option<crate::nodes::NodesCommand>,
        /// Print JSON (for the default `list`).
        #[arg(long)]
        json: bool,
    },
    /// The whole cluster's health.
    ///
    /// Example: dwcp cluster health
    #[command(subcommand)]
    Cluster(crate::nodes::ClusterCommand),
    /// Run N replicas of an app in the cluster (optionally only in some regions).
    ///
    /// Example: dwcp scale demo/hello 3 --region eu-west
    Scale {
        /// TENANT/APP.
        app: String,
        /// How many replicas.
        replicas: u32,
        /// Only in these regions (comma-separated or repeated).
        #[arg(long = "region", value_name = "REGION", value_delimiter = ',')]
        regions: Vec<String>,
    },
    /// Move a stateful app's keys (or one key) to another node, live: the
    /// keys serve while their state is copied, then pause for the last
    /// changes; requests that arrive meanwhile wait, none is lost.
    ///
    /// Example: dwcp migrate demo/counter --to edge-2
    Migrate {
        /// TENANT/APP.
        app: String,
        /// Move this key only (default: every key).
        #[arg(long)]
        key: Option<String>,
        /// The node to move to.
        #[arg(long, conflicts_with = "region", required_unless_present = "region")]
        to: Option<String>,
        /// Or a region: its active node with the most free memory.
        #[arg(long)]
        region: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The edge response cache: its counters, and purges (cluster-wide).
    ///
    /// Example: dwcp cache purge demo/hello --path /api
    #[command(subcommand)]
    Cache(crate::cache::CacheCommand),
    /// Where an app's replicas are and how requests reach them.
    ///
    /// Example: dwcp route status demo/hello
    #[command(subcommand)]
    Route(crate::nodes::RouteCommand),
    /// Print a shell completion script.
    ///
    /// Example: dwcp completions bash > /etc/bash_completion.d/dwcp
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Benchmarks against named peers.
    ///
    /// Example: dwcp bench http
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Args, Debug)]
pub struct UpArgs {
    /// Address to serve apps on (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// Ingress threads, each a single-threaded event loop (default: one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Host suffix apps are addressed under: APP.TENANT.<domain>.
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Component instances alive at once, across all apps.
    #[arg(long, default_value_t = 1000)]
    pub pool_instances: u32,
    /// Largest memory limit an app may be given.
    #[arg(long, default_value = "4GiB")]
    pub pool_max_memory: String,
    /// Memory per instance kept resident between instances (less kernel work per request).
    #[arg(long, default_value = "16MiB")]
    pub keep_resident: String,
    /// Largest component accepted by deploy.
    #[arg(long, default_value = "256MiB")]
    pub max_upload: String,
    /// How long in-flight requests may take to finish on shutdown.
    #[arg(long, default_value = "30s")]
    pub drain_timeout: String,
    /// Guest output kept per app for `dwcp logs` (oldest lines dropped first).
    #[arg(long, default_value = "1MiB")]
    pub log_buffer: String,
    /// Versions kept per app (older ones are removed on deploy and by `dwcp gc`;
    /// the serving one and the one before it always stay). `apps set` overrides it.
    #[arg(long, default_value_t = 10)]
    pub keep_versions: u32,
    /// Apps loaded at once at start (after an upgrade each compiles again; default: one per CPU).
    #[arg(long)]
    pub compile_jobs: Option<usize>,
    /// Fill the (empty) data directory from a `dwcp backup` archive, then start.
    #[arg(long, value_name = "FILE")]
    pub restore: Option<PathBuf>,
    /// How long audit entries are kept (removed by `dwcp gc`).
    #[arg(long, default_value = "90d")]
    pub audit_retention: String,
    /// Serve /metrics without a token (for a Prometheus that has none).
    #[arg(long)]
    pub metrics_public: bool,
    /// Serve HTTPS on --http with this certificate chain (PEM).
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve HTTPS on --http with a self-signed certificate kept in DATA_DIR/tls/
    /// (SANs localhost, *.localhost, 127.0.0.1).
    #[arg(long)]
    pub tls_self_signed: bool,
    /// Serve the admin API over the same TLS.
    #[arg(long)]
    pub admin_tls: bool,
    /// Replace the node's identity key when it is this old (`never`: only on demand).
    #[arg(long, default_value = "30d")]
    pub node_key_rotation: String,
    /// The bucketing of flags' `fractional`: flagd's v2 (exact), or v1 for
    /// flag files whose splits were made with flagd's older one.
    #[arg(long, default_value = "v2", value_parser = ["v1", "v2"])]
    pub flags_fractional: String,
    /// Log lines on stderr: `text` for people, `json` (one object per line) for log shippers.
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    /// Join an edge cluster: its NATS servers, `tls://HOST:PORT` (post-quantum
    /// TLS only) or `nats://HOST:PORT` (plaintext, for tests). JetStream must be on.
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,
    /// The CA (PEM) that signed the cluster's server certificates.
    #[arg(long, value_name = "FILE", requires = "cluster")]
    pub cluster_ca: Option<PathBuf>,
    /// The JetStream domain of the hub holding the cluster's state, when
    /// --cluster is a leaf server at an edge site (docs/operations.md).
    #[arg(long, value_name = "DOMAIN", requires = "cluster")]
    pub cluster_domain: Option<String>,
    /// Where other nodes reach this one (post-quantum TLS, HTTP/2; default: the
    /// --http host on a port the system picks; advertised in the cluster).
    #[arg(long, value_name = "ADDR", requires = "cluster")]
    pub peer: Option<std::net::SocketAddr>,
    /// How far back requests by region count when demand places replicas
    /// (a region sending 20% of an app's requests gets one).
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5m",
        requires = "cluster"
    )]
    pub demand_window: String,
    /// This node's id in the cluster (default: the host name).
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,
    /// This node's region.
    #[arg(long, default_value = "default", value_name = "R")]
    pub region: String,
    /// This node's labels, `k=v,k2=v2`.
    #[arg(long, value_name = "K=V,…")]
    pub labels: Option<String>,
    /// Send OpenTelemetry traces of the request path to this OTLP/HTTP endpoint
    /// (e.g. http://127.0.0.1:4318; off when not given). Also `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", value_name = "URL")]
    pub otlp_endpoint: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Make a publisher key (Ed25519 + ML-DSA-65) in DATA_DIR/keys/NAME.key (0600),
    /// and its public half in NAME.pub.
    ///
    /// Example: dwcp keys gen --publisher acme
    Gen {
        /// The publisher's name.
        #[arg(long)]
        publisher: String,
        /// Replace a key file of that name.
        #[arg(long)]
        force: bool,
    },
    /// The trust manifest's keys: ids, algorithms, validity, status.
    ///
    /// Example: dwcp keys list --json
    List {
        /// Print JSON: {root_key_id, root_algorithm, serial, issued_at, keys: [...]}.
        #[arg(long)]
        json: bool,
    },
    /// Trust a publisher key (its .pub or .key file): deploys it signs are accepted.
    ///
    /// Example: dwcp keys trust ~/.local/share/dwcp/keys/acme.pub --valid-for 90d
    Trust {
        /// The key's .pub (or .key) file, or the NAME of one in DATA_DIR/keys/.
        file: PathBuf,
        /// Accept it for this long (default: until revoked).
        #[arg(long)]
        valid_for: Option<String>,
    },
    /// Revoke a key: what it signs is refused from now on.
    ///
    /// Example: dwcp keys revoke 5d1c0a9e7b3f2a14 --reason "laptop lost"
    Revoke {
        /// The key's id, or its name if one trusted key has it (`dwcp keys list`).
        key_id: String,
        /// Why (kept in the manifest).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Replace a key by a new one it endorses; both are accepted during the overlap.
    ///
    /// Example: dwcp keys rotate --scope publisher --key keys/acme.key --overlap 24h
    Rotate {
        /// Which keys: publisher (the one in --key, default the local one), node, root, or all.
        #[arg(long, default_value = "publisher")]
        scope: String,
        /// The publisher key file to rotate (rewritten in place; the old one kept as FILE.prev).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// How long the old key stays accepted beside the new one.
        #[arg(long, default_value = "24h")]
        overlap: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Make a token; it is printed once and stored only as a hash.
    ///
    /// Example: dwcp tokens create --tenant acme --name ci
    Create {
        /// Scope it to this tenant's apps (default: the whole node).
        #[arg(long)]
        tenant: Option<String>,
        /// A name to tell it apart in `dwcp tokens list`.
        #[arg(long, default_value = "")]
        name: String,
        /// Print JSON: {token, id, scope, tenant, name, created_at}.
        #[arg(long)]
        json: bool,
    },
    /// List tokens (ids and scopes; never the tokens).
    ///
    /// Example: dwcp tokens list --json
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by its id: calls with it fail from now on.
    ///
    /// Example: dwcp tokens revoke 3f2a9c1b7d4e
    Revoke {
        /// The token's id (`dwcp tokens list`).
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    /// TENANT/APP (the tenant is created if it does not exist).
    pub app: String,
    /// The component (.wasm) to upload.
    pub file: PathBuf,
    /// Version name (default: v1, v2, …).
    #[arg(long)]
    pub version: Option<String>,
    #[command(flatten)]
    pub limits: LimitFlags,
    /// Run the component's initialization export once, now, and serve the state it
    /// leaves (default export: `wizer-initialize`; another: `--preinit=NAME`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "wizer-initialize", value_name = "FUNC")]
    pub preinit: Option<String>,
    #[command(flatten)]
    pub state: StatefulFlags,
    #[command(flatten)]
    pub release: crate::rollout::StrategyFlags,
    /// Sign with this publisher key (default: DATA_DIR/keys/local.key, made by `dwcp up`).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Upload with a signature made beforehand by `dwcp sign` instead of signing now.
    #[arg(long, value_name = "FILE.sig", conflicts_with = "key")]
    pub signature: Option<PathBuf>,
    /// In a cluster: run this many replicas (default: one on every node).
    #[arg(long, value_name = "N")]
    pub replicas: Option<u32>,
    /// In a cluster: only in these regions (comma-separated or repeated).
    #[arg(long = "region", value_name = "REGION", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// A stateful app and, optionally, one of its keys.
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// TENANT/APP.
    pub app: String,
    /// Only this key.
    #[arg(long)]
    pub key: Option<String>,
    /// Print JSON: an array of {key, seq, version, artifact_sha256, base, snapshot_id, bytes, memory_bytes, taken_at, reason}.
    #[arg(long)]
    pub json: bool,
}

/// `dwcp restore`'s arguments.
#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub target: KeyArgs,
    /// The checkpoint's sequence number (default: the latest).
    pub snapshot: Option<u64>,
}

/// How a stateful app keeps its keys (`deploy --stateful`).
#[derive(Args, Debug, Default)]
pub struct StatefulFlags {
    /// One long-lived instance per key, its memory kept across requests and
    /// checkpointed (the key comes from --key-header).
    #[arg(long)]
    pub stateful: bool,
    /// The request header that names the key.
    #[arg(long, value_name = "NAME", requires = "stateful")]
    pub key_header: Option<String>,
    /// When to checkpoint: `request` (after each, before the response: the
    /// default) or a period such as `5s`.
    #[arg(long, value_name = "WHEN", requires = "stateful")]
    pub checkpoint: Option<String>,
    /// Checkpoints kept per key (default 5).
    #[arg(long, value_name = "N", requires = "stateful")]
    pub keep_checkpoints: Option<u32>,
    /// Hibernate a key idle this long: checkpoint it and free its instance (default 5m).
    #[arg(long, value_name = "DURATION", requires = "stateful")]
    pub hibernate_after: Option<String>,
}

/// An app's limits, as `deploy` and `apps set` take them; one left out
/// keeps its current value (or the default, for a new app).
#[derive(Args, Debug, Default)]
pub struct LimitFlags {
    /// Linear memory limit per instance (default 64MiB).
    #[arg(long)]
    pub memory: Option<String>,
    /// Execution deadline per request, wall-clock (default 1s).
    #[arg(long)]
    pub deadline: Option<String>,
    /// Requests served at once; more wait up to 1s, then get 503 (default 100).
    #[arg(long)]
    pub concurrency: Option<u32>,
    /// Requests one instance may serve (default 1: a fresh instance each).
    #[arg(long)]
    pub reuse: Option<u32>,
}

#[derive(Args, Debug)]
pub struct AppsArgs {
    #[command(subcommand)]
    pub command: Option<AppsCommand>,
    /// Print JSON (fields in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// List apps (all, or one tenant's).
    ///
    /// Example: dwcp apps list demo
    List(ListArgs),
    /// Change an app's limits without a redeploy.
    ///
    /// Example: dwcp apps set demo/hello --memory 128MiB --concurrency 20
    Set(Box<SetArgs>),
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// TENANT/APP, or APP in the default tenant.
    pub app: String,
    #[command(flatten)]
    pub limits: LimitFlags,
    /// Let the guest's outgoing HTTP reach this host: `api.example.com`,
    /// `*.svc.example`, optionally `:PORT` (repeatable; adds to the rules).
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
    /// Let allowed hosts resolve into this private network (loopback,
    /// private, link-local addresses are refused otherwise; repeatable).
    #[arg(long = "allow-private", value_name = "CIDR")]
    pub allow_private: Vec<String>,
    /// Remove every egress rule first (then add those given).
    #[arg(long)]
    pub clear_egress: bool,
    /// Versions to keep for this app (default: the node's --keep-versions).
    #[arg(long)]
    pub keep_versions: Option<u32>,
    /// The app's default way for new versions to take over (with the
    /// canary and analysis flags: the app's defaults for those too).
    #[command(flatten)]
    pub release: crate::rollout::StrategyFlags,
    /// The request header that names a user for sticky splits (default x-user-id).
    #[arg(long, value_name = "NAME")]
    pub user_header: Option<String>,
    /// A cookie that names the user when the header is absent.
    #[arg(long, value_name = "NAME")]
    pub user_cookie: Option<String>,
    /// In a cluster: run this many replicas.
    #[arg(long, value_name = "N")]
    pub replicas: Option<u32>,
    /// In a cluster: keep the replicas in these regions (comma-separated or
    /// repeated; `any` unpins).
    #[arg(long = "pin-region", value_name = "REGION", value_delimiter = ',')]
    pub pin_regions: Vec<String>,
    /// How long the edge cache keeps GET answers that state no freshness
    /// of their own (`30s`, `5m`; `off`: not at all). Stateful apps: never.
    #[arg(long, value_name = "DURATION")]
    pub cache_ttl: Option<String>,
    /// Print the app's new status as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand, Debug)]
pub enum TenantsCommand {
    /// List tenants with their apps, quota and use.
    ///
    /// Example: dwcp tenants list --json
    List {
        /// Print JSON (fields in docs/cli.md).
        #[arg(long)]
        json: bool,
    },
    /// Create an empty tenant (deploy also creates one).
    ///
    /// Example: dwcp tenants create acme
    Create {
        /// The tenant's name.
        #[arg(id = "tenant_name", value_name = "TENANT")]
        tenant: String,
    },
    /// Delete a tenant with all its apps.
    ///
    /// Example: dwcp tenants delete acme
    Delete {
        /// The tenant's name.
        #[arg(id = "tenant_name", value_name = "TENANT")]
        tenant: String,
    },
    /// Set a tenant's quota (a limit left out: none).
    ///
    /// Example: dwcp tenants quota acme --memory 2GiB --instances 50
    Quota {
        /// The tenant's name.
        #[arg(id = "tenant_name", value_name = "TENANT")]
        tenant: String,
        /// Memory its serving instances may reserve together (each counts its app's limit).
        #[arg(long)]
        memory: Option<String>,
        /// Instances it may have serving at once; more requests get 503.
        #[arg(long)]
        instances: Option<u32>,
    },
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Only this tenant's apps. (Its own id: the global `--tenant` has a
    /// default, which must not turn `apps list` into one tenant's list.)
    #[arg(id = "only_tenant", value_name = "TENANT")]
    pub tenant: Option<String>,
    /// Print JSON (fields in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AppArg {
    /// TENANT/APP, or APP in the default tenant.
    pub app: String,
    /// Print JSON (fields in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// TENANT/APP, or APP in the default tenant.
    pub app: String,
    /// Only lines younger than this (`30s`, `5m`, `2h`) or written after
    /// this time (`2026-11-27T10:00:00Z`).
    #[arg(long)]
    pub since: Option<String>,
    /// Keep printing lines as they are written, until Ctrl-C.
    #[arg(long, short = 'f')]
    pub follow: bool,
    /// Print each line as JSON: {seq, at_ms, version, stream, text}.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct MetricsArgs {
    /// TENANT/APP, or APP in the default tenant (default: every app).
    pub app: Option<String>,
    /// How far back to look: `10s` to `15m`.
    #[arg(long, default_value = "5m")]
    pub window: String,
    /// Print JSON (fields in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct AppName {
    /// TENANT/APP, or APP in the default tenant.
    pub app: String,
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Instantiation time and first-request latency after a deploy.
    ///
    /// Example: dwcp bench coldstart --iterations 2000
    Coldstart(ColdstartArgs),
    /// hello under wrk: DWCP against `wasmtime serve` and native hyper.
    ///
    /// Example: dwcp bench http --duration 10s
    Http(HttpBenchArgs),
    /// Restart of a node holding many apps: time to ready and to serving all.
    ///
    /// Example: dwcp bench restart --apps 100
    Restart(RestartArgs),
    /// Requests to a component with a heavy start, deployed plain and with --preinit.
    ///
    /// Example: dwcp bench preinit --requests 50
    Preinit(PreinitArgs),
    /// The snapshot codec against zstd and lz4, on a guest's heaps or on your memory images.
    ///
    /// Example: dwcp bench codec --json out.json   (or: dwcp bench codec img0.bin img1.bin …)
    Codec(CodecArgs),
    /// Stateful keys: checkpoint pause, wake from hibernation, hibernated keys per node.
    ///
    /// Example: dwcp bench state --state-mib 64 --wake-mib 1 --keys 100000
    State(StateBenchArgs),
    /// Post-quantum cryptography against its classical peers: TLS handshakes,
    /// signatures, KEMs, sealing, hashing and verifying artifacts.
    ///
    /// Example: dwcp bench crypto --seconds 2
    Crypto(CryptoBenchArgs),
    /// Feature-flag evaluation: a static flag, a targeted flag and a `fractional` one.
    ///
    /// Example: dwcp bench flags --seconds 2
    Flags(FlagsBenchArgs),
    /// Canary rollouts under load: a bad canary aborted by itself, a good
    /// one promoted, and seeded simulations of the same analysis.
    ///
    /// Example: dwcp bench rollout --rate 1000 --simulations 1000
    Rollout(RolloutBenchArgs),
    /// Serve a native hyper hello-world (the ceiling `bench http` measures).
    #[command(hide = true)]
    NativeHello {
        /// Address to listen on.
        #[arg(long)]
        addr: SocketAddr,
    },
}

#[derive(Args, Debug)]
pub struct RolloutBenchArgs {
    /// Requests a second, each from a new user.
    #[arg(long, default_value_t = 1000)]
    pub rate: u64,
    /// Client connections carrying them.
    #[arg(long, default_value_t = 16)]
    pub connections: u64,
    /// The least time at each canary step.
    #[arg(long, default_value = "10s")]
    pub step_time: String,
    /// Seconds of load on v1 alone, to measure its own failure rate.
    #[arg(long, default_value_t = 5)]
    pub baseline_secs: u64,
    /// Give up on a live rollout that has not ended after this many seconds.
    #[arg(long, default_value_t = 300)]
    pub max_secs: u64,
    /// Seeded simulated rollouts of each kind (good, bad).
    #[arg(long, default_value_t = 1000)]
    pub simulations: u64,
    /// Only the simulations.
    #[arg(long)]
    pub skip_live: bool,
    /// Where `flaky.wasm` and `broken.wasm` are.
    #[arg(long, default_value = "target/examples")]
    pub examples: PathBuf,
}

#[derive(Args, Debug)]
pub struct FlagsBenchArgs {
    /// Seconds each figure takes: the median of three runs of a third of this each.
    #[arg(long, default_value_t = 1.5)]
    pub seconds: f64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct CryptoBenchArgs {
    /// Seconds each figure takes: the median of three runs of a third of this each.
    #[arg(long, default_value_t = 1.5)]
    pub seconds: f64,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args, Debug)]
pub struct PreinitArgs {
    /// The component (it must export `wizer-initialize`).
    #[arg(long, default_value = "target/examples/heavy-init.wasm")]
    pub component: PathBuf,
    /// Requests timed for each deployment.
    #[arg(long, default_value_t = 50)]
    pub requests: u32,
}

#[derive(Args, Debug)]
pub struct StateBenchArgs {
    /// The stateful guest (`POST /?pad=N` sizes its heap).
    #[arg(long, default_value = "target/examples/counter.wasm")]
    pub component: PathBuf,
    /// Memory of the key whose checkpoint pause is measured, in MiB.
    #[arg(long, default_value_t = 64)]
    pub state_mib: u64,
    /// Memory of the key woken from hibernation, in MiB.
    #[arg(long, default_value_t = 1)]
    pub wake_mib: u64,
    /// Checkpoints and wakes timed.
    #[arg(long, default_value_t = 200)]
    pub iterations: u32,
    /// Keys created and hibernated on a node (0: skip).
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Client connections creating them.
    #[arg(long, default_value_t = 4)]
    pub clients: u64,
    /// Where the data goes (default: the system's temporary directory; its
    /// filesystem decides what a sync costs).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CodecArgs {
    /// Raw memory images of one instance, in order (default: the heapgen corpus).
    pub files: Vec<PathBuf>,
    /// Also write the results as JSON to this file: {"full": [ROW…], "incremental": [ROW…]}.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// The core-module guest part of the corpus is taken from.
    #[arg(long, default_value = "target/examples/heapgen.core.wasm")]
    pub guest: PathBuf,
    /// Where the `kv` and `counter` components are (the rest of the corpus:
    /// their checkpoints).
    #[arg(long, default_value = "target/examples")]
    pub examples: PathBuf,
    /// zstd level of the dense mode.
    #[arg(long, default_value_t = 3)]
    pub dense_level: i32,
    /// Skip the zstd-19 peers (minutes on large corpora).
    #[arg(long)]
    pub no_slow_peers: bool,
}

#[derive(Args, Debug)]
pub struct ColdstartArgs {
    /// The component to measure.
    #[arg(long, default_value = "target/examples/hello.wasm")]
    pub component: PathBuf,
    /// Instantiations to time.
    #[arg(long, default_value_t = 2000)]
    pub iterations: u32,
    /// Deploys whose first request is timed.
    #[arg(long, default_value_t = 20)]
    pub deploys: u32,
}

#[derive(Args, Debug)]
pub struct HttpBenchArgs {
    /// The component to serve.
    #[arg(long, default_value = "target/examples/hello.wasm")]
    pub component: PathBuf,
    /// wrk duration per target.
    #[arg(long, default_value = "10s")]
    pub duration: String,
    /// wrk connections.
    #[arg(long, default_value_t = 64)]
    pub connections: u32,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// DWCP ingress threads (default: the node's default, one per CPU).
    #[arg(long)]
    pub workers: Option<usize>,
    /// The `wasmtime` CLI to compare with.
    #[arg(long, default_value = "wasmtime")]
    pub wasmtime: String,
    /// Only these targets (dwcp, dwcp-reuse, dwcp-spin, wasmtime, native), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

#[derive(Args, Debug)]
pub struct RestartArgs {
    /// The component each app runs (made distinct per app with a custom section).
    #[arg(long, default_value = "target/examples/hello.wasm")]
    pub component: PathBuf,
    /// How many apps the node holds.
    #[arg(long, default_value_t = 100)]
    pub apps: u32,
    /// The peer: a `wasmtime` CLI, which compiles the same files one by one.
    #[arg(long, default_value = "wasmtime", env = "DWCP_WASMTIME")]
    pub wasmtime: String,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Set a value (new instances see it at once).
    ///
    /// Example: dwcp config set demo/hello GREETING=hi
    Set {
        /// TENANT/APP, or APP in the default tenant.
        app: String,
        /// KEY=VALUE.
        assignment: String,
    },
    /// Print one value.
    ///
    /// Example: dwcp config get demo/hello GREETING
    Get {
        /// TENANT/APP, or APP in the default tenant.
        app: String,
        /// The key.
        key: String,
        /// Print JSON: {"KEY": "value"}.
        #[arg(long)]
        json: bool,
    },
    /// List every value.
    ///
    /// Example: dwcp config list demo/hello --json
    List {
        /// TENANT/APP, or APP in the default tenant.
        app: String,
        /// Print JSON (an object of keys to values).
        #[arg(long)]
        json: bool,
    },
    /// Remove a value.
    ///
    /// Example: dwcp config unset demo/hello GREETING
    Unset {
        /// TENANT/APP, or APP in the default tenant.
        app: String,
        /// The key.
        key: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum SecretsCommand {
    /// Set a secret from a file (NAME=@FILE) or standard input (NAME=-).
    ///
    /// Example: dwcp secrets set demo/hello API_TOKEN=@token.txt
    Set {
        /// TENANT/APP, or APP in the default tenant.
        app: String,
        /// NAME=@FILE or NAME=- (never the value itself: it would stay in your shell history).
        assignment: String,
    },
    /// List the names of the secrets (never their values).
    ///
    /// Example: dwcp secrets list demo/hello
    List {
        /// TENANT/APP, or APP in the default tenant.
        app: String,
        /// Print JSON (an array of names).
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    ///
    /// Example: dwcp secrets unset demo/hello API_TOKEN
    Unset {
        /// TENANT/APP, or APP in the default tenant.
        app: String,
        /// The secret's name.
        name: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The global `--tenant` has a default; positionals named "tenant" must
    /// not pick it up, or `dwcp tenants delete` would delete `default`.
    #[test]
    fn tenant_positionals_do_not_take_the_global_default() {
        assert!(Cli::try_parse_from(["dwcp", "tenants", "delete"]).is_err());
        assert!(Cli::try_parse_from(["dwcp", "tenants", "quota"]).is_err());
        let cli = Cli::try_parse_from(["dwcp", "apps", "list"]).unwrap();
        match cli.command {
            Command::Apps(AppsArgs {
                command: Some(AppsCommand::List(list)),
                ..
            }) => assert_eq!(list.tenant, None),
            other => panic!("parsed as {other:?}"),
        }
        let cli =
            Cli::try_parse_from(["dwcp", "--tenant", "x", "tenants", "delete", "acme"]).unwrap();
        match cli.command {
            Command::Tenants(TenantsCommand::Delete { tenant }) => assert_eq!(tenant, "acme"),
            other => panic!("parsed as {other:?}"),
        }
    }
}
