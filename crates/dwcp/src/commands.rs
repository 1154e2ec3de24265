//! What each command does.

use std::path::PathBuf;

use anyhow::Context;
use comfy_table::{Table, presets::NOTHING};
use serde_json::Value;

use crate::cli::{
    AppArg, AppsCommand, Cli, Command, ConfigCommand, DeployArgs, LimitFlags, SecretsCommand,
    SetArgs, TenantsCommand,
};
use crate::client::AdminClient;

/// Runs the parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
    // --token, else DWCP_TOKEN (both in `cli.token`), else the node-wide
    // token `dwcp up` wrote into the data directory.
    // The file's node-wide token is sent only to an admin API on this
    // machine: a remote one gets --token or DWCP_TOKEN, never this one.
    let token = cli.token.clone().or_else(|| {
        is_loopback(&cli.admin)
            .then(|| std::fs::read_to_string(data_dir.join(dwcp_node::ADMIN_TOKEN_FILE)).ok())
            .flatten()
            .map(|t| t.trim().to_string())
    });
    // For an https:// admin API: DWCP_ADMIN_CA, else the self-signed
    // certificate `dwcp up --tls-self-signed` wrote into the data directory.
    let ca = match std::env::var_os("DWCP_ADMIN_CA") {
        // Named explicitly: it must be there.
        Some(path) => Some(std::fs::read(&path).with_context(|| {
            format!(
                "DWCP_ADMIN_CA: cannot read {}",
                std::path::Path::new(&path).display()
            )
        })?),
        None => std::fs::read(data_dir.join("tls/cert.pem")).ok(),
    };
    let client = || AdminClient::with_ca(&cli.admin, token.clone(), ca.as_deref());
    if let Command::Ask(args) = cli.command {
        let globals = crate::ask::Globals {
            admin: cli.admin,
            token: cli.token,
            tenant: cli.tenant,
            data_dir: cli.data_dir,
        };
        return crate::ask::run(&globals, args);
    }
    match cli.command {
        Command::Up(args) => crate::up::run(args, &cli.admin, data_dir),
        Command::Deploy(args) => deploy(&client(), &cli.tenant, &data_dir, args),
        Command::Apps(args) => match args.command {
            Some(AppsCommand::List(list)) => {
                apps_list(&client(), list.tenant.as_deref(), list.json || args.json)
            }
            Some(AppsCommand::Set(set)) => apps_set(&client(), &cli.tenant, *set),
            None => apps_list(&client(), None, args.json),
        },
        Command::Status(arg) => status(&client(), &cli.tenant, arg),
        Command::Versions(arg) => versions(&client(), &cli.tenant, arg),
        Command::Snapshot(args) => crate::snapshots::snapshot(&client(), &cli.tenant, args),
        Command::Snapshots(args) => crate::snapshots::snapshots(&client(), &cli.tenant, args),
        Command::Restore(args) => crate::snapshots::restore(&client(), &cli.tenant, args),
        Command::Delete(arg) => {
            let (tenant, app) = split_app(&cli.tenant, &arg.app)?;
            let out: Value = client().delete(&format!("/v1/apps/{tenant}/{app}"))?;
            println!(
                "deleted {tenant}/{app} ({} version(s))",
                out["deleted_versions"].as_u64().unwrap_or(0)
            );
            Ok(())
        }
        Command::Restart(arg) => {
            let (tenant, app) = split_app(&cli.tenant, &arg.app)?;
            let _: Value = client().send("POST", &format!("/v1/apps/{tenant}/{app}/restart"))?;
            println!("restarted {tenant}/{app}: new requests get fresh instances");
            Ok(())
        }
        Command::Tenants(command) => tenants(&client(), command),
        Command::Audit { since, json } => audit(&client(), since.as_deref(), json),
        Command::Config(command) => config(&client(), &cli.tenant, command),
        Command::Secrets(command) => secrets(&client(), &cli.tenant, command),
        Command::Backup { file } => backup(&client(), &file),
        Command::Gc { dry_run, json } => gc(&client(), dry_run, json),
        Command::Tokens(command) => crate::access::tokens(&client(), command),
        Command::Rollout(command) => crate::rollout::run(&client(), &cli.tenant, command),
        Command::Experiment(command) => crate::experiment::run(&client(), &cli.tenant, command),
        Command::Flags(command) => crate::flags::run(&client(), &cli.tenant, command),
        Command::Keys(command) => crate::keys::run(&client(), &data_dir, command),
        Command::Sign {
            app,
            file,
            version,
            key,
            out,
        } => crate::keys::sign(&cli.tenant, &data_dir, &app, &file, &version, key, out),
        Command::Verify {
            file,
            signature,
            json,
        } => crate::keys::verify(&client(), &data_dir, &file, signature, json),
        Command::Logs(args) => crate::observe::logs(&client(), &cli.tenant, args),
        Command::Metrics(args) => crate::observe::metrics(&client(), &cli.tenant, args),
        Command::Bench(bench) => crate::bench::run(bench),
        Command::Ask(_) => unreachable!("handled above"),
        Command::Gen(command) => crate::r#gen::run(&command),
        Command::Nodes { command, json } => crate::nodes::nodes(&client(), command, json),
        Command::Cluster(command) => crate::nodes::cluster(&client(), command),
        Command::Scale {
            app,
            replicas,
            regions,
        } => crate::nodes::scale(&client(), &app, replicas, &regions),
        Command::Route(command) => crate::nodes::route(&client(), command),
        Command::Migrate {
            app,
            key,
            to,
            region,
            json,
        } => crate::nodes::migrate(&client(), &app, key, to, region, json),
        Command::Cache(command) => crate::cache::cache(&client(), command),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "dwcp", &mut std::io::stdout());
            Ok(())
        }
    }
}

/// `$XDG_DATA_HOME/dwcp`, else `~/.local/share/dwcp`.
/// Whether an admin URL (`http://127.0.0.1:8081`, `https://localhost:…`)
/// names this machine.
fn is_loopback(admin: &str) -> bool {
    let rest = admin
        .strip_prefix("http://")
        .or_else(|| admin.strip_prefix("https://"))
        .unwrap_or(admin);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn default_data_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("dwcp");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/share/dwcp")
}

/// `TENANT/APP`, or `APP` in the default tenant; names are checked here so
/// that a typo gets its message before any network round trip.
pub(crate) fn split_app(default_tenant: &str, arg: &str) -> anyhow::Result<(String, String)> {
    let id = if arg.contains('/') {
        dwcp_store::AppId::parse(arg)?
    } else {
        dwcp_store::AppId::new(default_tenant, arg)?
    };
    Ok((id.tenant, id.app))
}

pub(crate) fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn deploy(
    client: &AdminClient,
    default_tenant: &str,
    data_dir: &std::path::Path,
    args: DeployArgs,
) -> anyhow::Result<()> {
    let (tenant, app) = split_app(default_tenant, &args.app)?;
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    // Checked before anything is sent: the signature must be for this
    // upload (the node checks it again).
    let detached = match &args.signature {
        Some(path) => {
            let sig = crate::signing::Detached::read(path)?;
            let sha256 = dwcp_store::sha256_hex(&bytes);
            if (sig.tenant.as_str(), sig.app.as_str()) != (tenant.as_str(), app.as_str())
                || sig.sha256 != sha256
                || args.version.as_ref().is_some_and(|v| *v != sig.version)
            {
                anyhow::bail!(
                    "{} signs {}/{} {} sha256:{}, not {tenant}/{app} {} sha256:{sha256}",
                    path.display(),
                    sig.tenant,
                    sig.app,
                    sig.version,
                    sig.sha256,
                    args.version.as_deref().unwrap_or(&sig.version)
                );
            }
            Some(sig)
        }
        None => None,
    };
    let mut query = limits_query(None, args.limits);
    if let Some(func) = &args.preinit {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&format!("preinit={}", percent_encode(func)));
    }
    let state = &args.state;
    if state.stateful {
        let mut add = |key: &str, value: Option<String>| {
            if let Some(v) = value {
                if !query.is_empty() {
                    query.push('&');
                }
                query.push_str(&format!("{key}={}", percent_encode(&v)));
            }
        };
        add("stateful", Some("true".into()));
        add("key_header", state.key_header.clone());
        add("checkpoint", state.checkpoint.clone());
        add(
            "keep_checkpoints",
            state.keep_checkpoints.map(|k| k.to_string()),
        );
        add("hibernate_after", state.hibernate_after.clone());
    }
    for pair in args.release.query() {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&pair);
    }
    for pair in placement_query(args.replicas, &args.regions, "region") {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&pair);
    }
    let out = match detached {
        Some(sig) => crate::signing::upload_with(client, &sig, &query, bytes)?,
        None => {
            let publisher = crate::signing::Publisher::load(args.key.as_deref(), data_dir)?;
            crate::signing::upload_signed(
                client,
                &publisher,
                &tenant,
                &app,
                args.version,
                &query,
                bytes,
            )?
        }
    };
    if args.json {
        return print_json(&out);
    }
    let compile = match out["aot_cache"].as_str() {
        Some("hit") => "already compiled".to_string(),
        _ => format!(
            "compiled in {:.0} ms",
            out["compile_ms"].as_f64().unwrap_or(0.0)
        ),
    };
    if out["tenant_created"].as_bool() == Some(true) {
        println!("created tenant {tenant}");
    }
    let serving = match out["strategy"].as_str() {
        Some("canary") => format!(
            "its canary serves a first share of users at Host: {app}.{tenant}.localhost; `dwcp rollout status {tenant}/{app}` follows it"
        ),
        Some("blue-green") => {
            format!("checked, then switched: serving at Host: {app}.{tenant}.localhost")
        }
        _ => format!("serving at Host: {app}.{tenant}.localhost"),
    };
    println!(
        "deployed {tenant}/{app} {} ({}, {} bytes, {compile}); {serving}",
        out["version"].as_str().unwrap_or("?"),
        short_hash(out["sha256"].as_str().unwrap_or("")),
        out["size"].as_u64().unwrap_or(0),
    );
    Ok(())
}

/// Query string of the version and limit flags given on the command line.
fn limits_query(version: Option<String>, limits: LimitFlags) -> String {
    let mut query = Vec::new();
    let mut add = |key: &str, value: Option<String>| {
        if let Some(v) = value {
            query.push(format!("{key}={}", percent_encode(&v)));
        }
    };
    add("version", version);
    add("memory", limits.memory);
    add("deadline", limits.deadline);
    add("concurrency", limits.concurrency.map(|c| c.to_string()));
    add("reuse", limits.reuse.map(|r| r.to_string()));
    query.join("&")
}

/// `replicas=N` and the regions under `regions_key`, as query pairs.
pub(crate) fn placement_query(
    replicas: Option<u32>,
    regions: &[String],
    regions_key: &str,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(n) = replicas {
        out.push(format!("replicas={n}"));
    }
    if !regions.is_empty() {
        out.push(format!(
            "{regions_key}={}",
            percent_encode(&regions.join(","))
        ));
    }
    out
}

fn apps_set(client: &AdminClient, default_tenant: &str, args: SetArgs) -> anyhow::Result<()> {
    let (tenant, app) = split_app(default_tenant, &args.app)?;
    let mut query = limits_query(None, args.limits);
    let mut add = |key: &str, values: &[String]| {
        if !values.is_empty() {
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&format!("{key}={}", percent_encode(&values.join(","))));
        }
    };
    add("allow_host", &args.allow_hosts);
    add("allow_private", &args.allow_private);
    for (key, value) in [
        ("user_header", &args.user_header),
        ("user_cookie", &args.user_cookie),
    ] {
        if let Some(v) = value {
            add(key, std::slice::from_ref(v));
        }
    }
    if args.clear_egress {
        add("clear_egress", &["true".to_string()]);
    }
    if let Some(keep) = args.keep_versions {
        add("keep_versions", &[keep.to_string()]);
    }
    if let Some(ttl) = &args.cache_ttl {
        add("cache_ttl", std::slice::from_ref(ttl));
    }
    for pair in placement_query(args.replicas, &args.pin_regions, "pin_region") {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&pair);
    }
    for pair in args.release.query() {
        if !query.is_empty() {
            query.push('&');
        }
        query.push_str(&pair);
    }
    if query.is_empty() {
        anyhow::bail!(
            "nothing to set: give --memory, --deadline, --concurrency, --reuse, --allow-host, --allow-private, --clear-egress, --keep-versions, --strategy (and its flags), --user-header, --user-cookie, --replicas, --pin-region or --cache-ttl"
        );
    }
    let s: Value = client.send("PATCH", &format!("/v1/apps/{tenant}/{app}?{query}"))?;
    if args.json {
        return print_json(&s);
    }
    let l = &s["limits"];
    println!(
        "{tenant}/{app}: memory {}, deadline {} ms, concurrency {}, reuse {}; egress: {}",
        bytes(l["memory_bytes"].as_u64()),
        text(&l["deadline_ms"]),
        text(&l["concurrency"]),
        text(&l["reuse"]),
        egress_summary(&s["egress"]),
    );
    Ok(())
}

/// `api.example.com, *.svc.example (private: 10.0.0.0/8)`, or `denied`.
fn egress_summary(egress: &Value) -> String {
    let list = |key: &str| -> Vec<String> {
        egress[key]
            .as_array()
            .map(|a| a.iter().map(text).collect())
            .unwrap_or_default()
    };
    let hosts = list("allow_hosts");
    let private = list("allow_private");
    if hosts.is_empty() {
        return "denied".into();
    }
    if private.is_empty() {
        hosts.join(", ")
    } else {
        format!("{} (private: {})", hosts.join(", "), private.join(", "))
    }
}

fn config(
    client: &AdminClient,
    default_tenant: &str,
    command: ConfigCommand,
) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Set { app, assignment } => {
            let (tenant, app) = split_app(default_tenant, &app)?;
            let (key, value) = assignment
                .split_once('=')
                .context("write the value as KEY=VALUE")?;
            let _: Value = client.put(
                &format!("/v1/apps/{tenant}/{app}/config/{}", percent_encode(key)),
                value.as_bytes(),
            )?;
            println!("{tenant}/{app}: config {key} set; new instances see it");
        }
        ConfigCommand::Get { app, key, json } => {
            let (tenant, app) = split_app(default_tenant, &app)?;
            let all: Value = client.get(&format!("/v1/apps/{tenant}/{app}/config"))?;
            match all.get(&key).and_then(Value::as_str) {
                Some(value) if json => print_json(&serde_json::json!({ key: value }))?,
                Some(value) => println!("{value}"),
                None => anyhow::bail!("{tenant}/{app} has no config `{key}`"),
            }
        }
        ConfigCommand::List { app, json } => {
            let (tenant, app) = split_app(default_tenant, &app)?;
            let all: Value = client.get(&format!("/v1/apps/{tenant}/{app}/config"))?;
            if json {
                return print_json(&all);
            }
            for (key, value) in all.as_object().cloned().unwrap_or_default() {
                println!("{key}={}", text(&value));
            }
        }
        ConfigCommand::Unset { app, key } => {
            let (tenant, app) = split_app(default_tenant, &app)?;
            let _: Value = client.delete(&format!(
                "/v1/apps/{tenant}/{app}/config/{}",
                percent_encode(&key)
            ))?;
            println!("{tenant}/{app}: config {key} removed");
        }
    }
    Ok(())
}

fn secrets(
    client: &AdminClient,
    default_tenant: &str,
    command: SecretsCommand,
) -> anyhow::Result<()> {
    match command {
        SecretsCommand::Set { app, assignment } => {
            let (tenant, app) = split_app(default_tenant, &app)?;
            let (name, source) = assignment
                .split_once('=')
                .context("write it as NAME=@FILE or NAME=- (standard input)")?;
            let value = if source == "-" {
                let mut value = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut value)
                    .context("cannot read the secret from standard input")?;
                value
            } else if let Some(file) = source.strip_prefix('@') {
                std::fs::read(file)
                    .with_context(|| format!("cannot read the secret file {file}"))?
            } else {
                anyhow::bail!(
                    "give the secret as NAME=@FILE or NAME=- (standard input), not on the command line where shell history keeps it"
                );
            };
            // A trailing newline from `echo` or an editor is not part of a secret.
            let value = value.strip_suffix(b"\n").unwrap_or(&value);
            let _: Value = client.put(
                &format!("/v1/apps/{tenant}/{app}/secrets/{}", percent_encode(name)),
                value,
            )?;
            println!("{tenant}/{app}: secret {name} set; new instances see it");
        }
        SecretsCommand::List { app, json } => {
            let (tenant, app) = split_app(default_tenant, &app)?;
            let names: Value = client.get(&format!("/v1/apps/{tenant}/{app}/secrets"))?;
            if json {
                return print_json(&names);
            }
            for name in names.as_array().cloned().unwrap_or_default() {
                println!("{}", text(&name));
            }
        }
        SecretsCommand::Unset { app, name } => {
            let (tenant, app) = split_app(default_tenant, &app)?;
            let _: Value = client.delete(&format!(
                "/v1/apps/{tenant}/{app}/secrets/{}",
                percent_encode(&name)
            ))?;
            println!("{tenant}/{app}: secret {name} removed");
        }
    }
    Ok(())
}

fn audit(client: &AdminClient, since: Option<&str>, json: bool) -> anyhow::Result<()> {
    let since = match since {
        Some(d) => {
            let ago = humantime::parse_duration(d)
                .with_context(|| format!("--since `{d}`: write it as `30m`, `2h` or `7d`"))?;
            dwcp_store::unix_now().saturating_sub(ago.as_secs())
        }
        None => 0,
    };
    let entries: Value = client.get(&format!("/v1/audit?since={since}"))?;
    if json {
        return print_json(&entries);
    }
    let mut table = Table::new();
    *table.style_mut() = NOTHING;
    table.set_header(["WHEN", "TOKEN", "STATUS", "ACTION"]);
    for e in entries.as_array().cloned().unwrap_or_default() {
        table.add_row([
            age(e["at"].as_u64()),
            e["token"].as_str().unwrap_or("-").to_string(),
            text(&e["status"]),
            text(&e["action"]),
        ]);
    }
    println!("{table}");
    Ok(())
}

fn backup(client: &AdminClient, file: &std::path::Path) -> anyhow::Result<()> {
    // Written beside its final name and renamed when complete: a backup
    // cut short never takes the place of a good one.
    let mut partial_name = file.as_os_str().to_owned();
    partial_name.push(".partial");
    let partial = PathBuf::from(partial_name);
    let mut out = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    let written = client
        .download("/v1/backup", &mut out)
        .and_then(|n| {
            out.sync_all()?;
            Ok(n)
        })
        .and_then(|n| {
            let manifest = dwcp_node::read_manifest(&partial)?;
            Ok((n, manifest))
        });
    let (bytes_written, manifest) = match written {
        Ok(done) => done,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e.context("backup not written"));
        }
    };
    std::fs::rename(&partial, file)
        .with_context(|| format!("cannot rename {} to {}", partial.display(), file.display()))?;
    println!(
        "backup of {} tenant(s), {} app(s), {} version(s), {} sealed secret(s), {} checkpoint(s) written to {} ({})",
        manifest.tenants,
        manifest.apps,
        manifest.versions,
        manifest.secrets,
        manifest.checkpoints,
        file.display(),
        bytes(Some(bytes_written))
    );
    if manifest.secrets > 0 {
        println!(
            "the secrets are sealed: restoring them needs this node's keys/secrets.key (fingerprint {}), kept apart from the backup",
            manifest.secrets_key
        );
    }
    Ok(())
}

fn gc(client: &AdminClient, dry_run: bool, json: bool) -> anyhow::Result<()> {
    let report: Value = client.send("POST", &format!("/v1/gc?dry_run={dry_run}"))?;
    if json {
        return print_json(&report);
    }
    let list = |key: &str| report[key].as_array().cloned().unwrap_or_default();
    let verb = if dry_run { "would remove" } else { "removed" };
    for v in list("versions") {
        println!("{verb} version {}", text(&v));
    }
    for a in list("artifacts") {
        println!("{verb} artifact {}", short_hash(&text(&a)));
    }
    for c in list("compiled") {
        println!("{verb} compiled code {}", text(&c));
    }
    println!(
        "{verb} {} version(s), {} artifact(s), {} compiled file(s) and {} audit entries ({} of files)",
        list("versions").len(),
        list("artifacts").len(),
        list("compiled").len(),
        report["audit_entries"].as_u64().unwrap_or(0),
        bytes(report["bytes"].as_u64())
    );
    Ok(())
}

fn tenants(client: &AdminClient, command: TenantsCommand) -> anyhow::Result<()> {
    match command {
        TenantsCommand::List { json } => {
            let tenants: Value = client.get("/v1/tenants")?;
            if json {
                return print_json(&tenants);
            }
            let mut table = Table::new();
            *table.style_mut() = NOTHING;
            table.set_header([
                "TENANT",
                "APPS",
                "MEMORY QUOTA",
                "INSTANCE QUOTA",
                "SERVING NOW",
            ]);
            for t in tenants.as_array().cloned().unwrap_or_default() {
                let quota = &t["quota"];
                table.add_row([
                    text(&t["name"]),
                    text(&t["apps"]),
                    quota["memory_bytes"]
                        .as_u64()
                        .map_or_else(|| "none".into(), |m| bytes(Some(m))),
                    quota["instances"]
                        .as_u64()
                        .map_or_else(|| "none".into(), |n| n.to_string()),
                    format!(
                        "{} instances, {}",
                        text(&t["usage"]["instances"]),
                        bytes(t["usage"]["memory_bytes"].as_u64())
                    ),
                ]);
            }
            println!("{table}");
        }
        TenantsCommand::Create { tenant } => {
            dwcp_store::validate_label(&tenant)?;
            let _: Value = client.send("POST", &format!("/v1/tenants/{tenant}"))?;
            println!("created tenant {tenant}");
        }
        TenantsCommand::Delete { tenant } => {
            dwcp_store::validate_label(&tenant)?;
            let out: Value = client.delete(&format!("/v1/tenants/{tenant}"))?;
            println!(
                "deleted tenant {tenant} and its {} app(s)",
                out["deleted_apps"].as_u64().unwrap_or(0)
            );
        }
        TenantsCommand::Quota {
            tenant,
            memory,
            instances,
        } => {
            dwcp_store::validate_label(&tenant)?;
            let query = limits_query(
                None,
                LimitFlags {
                    memory,
                    ..LimitFlags::default()
                },
            );
            let query = match instances {
                Some(n) if query.is_empty() => format!("instances={n}"),
                Some(n) => format!("{query}&instances={n}"),
                None => query,
            };
            let t: Value = client.send("PUT", &format!("/v1/tenants/{tenant}/quota?{query}"))?;
            let quota = &t["quota"];
            println!(
                "tenant {tenant}: memory quota {}, instance quota {}",
                quota["memory_bytes"]
                    .as_u64()
                    .map_or_else(|| "none".into(), |m| bytes(Some(m))),
                quota["instances"]
                    .as_u64()
                    .map_or_else(|| "none".into(), |n| n.to_string()),
            );
        }
    }
    Ok(())
}

fn apps_list(client: &AdminClient, tenant: Option<&str>, json: bool) -> anyhow::Result<()> {
    let path = match tenant {
        Some(t) => format!("/v1/apps?tenant={}", percent_encode(t)),
        None => "/v1/apps".to_string(),
    };
    let apps: Value = client.get(&path)?;
    if json {
        return print_json(&apps);
    }
    let rows = apps.as_array().cloned().unwrap_or_default();
    if rows.is_empty() {
        println!("no apps yet: deploy one with `dwcp deploy TENANT/APP FILE.wasm`");
        return Ok(());
    }
    let mut table = Table::new();
    *table.style_mut() = NOTHING;
    table.set_header([
        "TENANT", "APP", "VERSION", "VERSIONS", "SERVING", "DEPLOYED",
    ]);
    for a in rows {
        table.add_row([
            text(&a["tenant"]),
            text(&a["app"]),
            text(&a["active_version"]),
            text(&a["versions"]),
            if a["serving"].as_bool() == Some(true) {
                "yes".into()
            } else {
                "no".into()
            },
            age(a["deployed_at"].as_u64()),
        ]);
    }
    println!("{table}");
    Ok(())
}

fn status(client: &AdminClient, default_tenant: &str, arg: AppArg) -> anyhow::Result<()> {
    let (tenant, app) = split_app(default_tenant, &arg.app)?;
    let s: Value = client.get(&format!("/v1/apps/{tenant}/{app}"))?;
    if arg.json {
        return print_json(&s);
    }
    let l = &s["limits"];
    println!("{tenant}/{app}");
    println!("  host         {}", text(&s["host"]));
    println!(
        "  serving      {}",
        if s["serving"].as_bool() == Some(true) {
            "yes"
        } else {
            "no"
        }
    );
    println!(
        "  version      {} (of {} stored, {} kept)",
        text(&s["active_version"]),
        text(&s["versions"]),
        text(&s["keep_versions"])
    );
    println!(
        "  artifact     sha256:{} ({} bytes)",
        text(&s["sha256"]),
        text(&s["size"])
    );
    println!("  deployed     {}", age(s["deployed_at"].as_u64()));
    if let Some(split) = s["split"].as_object() {
        println!(
            "  split        {} of users on {} ({}: `dwcp {} {} {tenant}/{app}`)",
            format_args!("{}%", split["percent"].as_f64().unwrap_or(0.0)),
            text(&split["version"]),
            text(&split["kind"]),
            text(&split["kind"]),
            if split["kind"] == "rollout" {
                "status"
            } else {
                "results"
            },
        );
    }
    println!("  in flight    {}", text(&s["in_flight"]));
    println!(
        "  limits       memory {}, deadline {} ms, concurrency {}, reuse {}",
        bytes(l["memory_bytes"].as_u64()),
        text(&l["deadline_ms"]),
        text(&l["concurrency"]),
        text(&l["reuse"]),
    );
    println!("  egress       {}", egress_summary(&s["egress"]));
    println!(
        "  body caps    request {}, response {}",
        bytes(l["max_request_body"].as_u64()),
        bytes(l["max_response_body"].as_u64()),
    );
    Ok(())
}

fn versions(client: &AdminClient, default_tenant: &str, arg: AppArg) -> anyhow::Result<()> {
    let (tenant, app) = split_app(default_tenant, &arg.app)?;
    let versions: Value = client.get(&format!("/v1/apps/{tenant}/{app}/versions"))?;
    if arg.json {
        return print_json(&versions);
    }
    let mut table = Table::new();
    *table.style_mut() = NOTHING;
    let versions = versions.as_array().cloned().unwrap_or_default();
    let stateful = versions.iter().any(|v| v.get("keys").is_some());
    let mut header = vec!["", "VERSION", "SHA256", "SIZE", "DEPLOYED", "PREINIT"];
    if stateful {
        header.push("KEYS");
    }
    table.set_header(header);
    for v in versions {
        let mut row = vec![
            if v["active"].as_bool() == Some(true) {
                "*".into()
            } else {
                String::new()
            },
            text(&v["version"]),
            short_hash(v["sha256"].as_str().unwrap_or("")),
            bytes(v["size"].as_u64()),
            age(v["deployed_at"].as_u64()),
            v["preinit"].as_str().unwrap_or("-").to_string(),
        ];
        if stateful {
            row.push(text(&v["keys"]));
        }
        table.add_row(row);
    }
    println!("{table}");
    Ok(())
}

pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

pub(crate) fn short_hash(sha: &str) -> String {
    format!("sha256:{}", &sha[..sha.len().min(12)])
}

pub(crate) fn bytes(n: Option<u64>) -> String {
    n.map_or_else(
        || "-".into(),
        |n| bytesize::ByteSize::b(n).display().iec().to_string(),
    )
}

pub(crate) fn age(unix: Option<u64>) -> String {
    let Some(t) = unix.filter(|t| *t > 0) else {
        return "-".into();
    };
    let now = dwcp_store::unix_now();
    let secs = now.saturating_sub(t);
    let ago = humantime::format_duration(std::time::Duration::from_secs(secs)).to_string();
    let first = ago.split(' ').next().unwrap_or("0s");
    format!("{first} ago")
}

/// Percent-encodes a query value (only what our values can contain needs it).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod loopback_tests {
    use super::is_loopback;

    #[test]
    fn only_this_machine_gets_the_data_directory_token() {
        for local in [
            "http://127.0.0.1:8081",
            "https://localhost:8081/",
            "http://[::1]:8081",
            "127.0.0.1:8081",
            "http://127.0.0.2:9",
        ] {
            assert!(is_loopback(local), "{local}");
        }
        for remote in [
            "http://10.0.0.5:8081",
            "https://node.example.com",
            "http://localhost.example.com:8081",
            "http://[2001:db8::1]:8081",
        ] {
            assert!(!is_loopback(remote), "{remote}");
        }
    }
}
