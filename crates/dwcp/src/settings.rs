//! The CLI's settings file: defaults for the global options (`admin`,
//! `token`, `tenant`, `data_dir`), so commands stay short. A flag beats an
//! environment variable (`DWCP_ADMIN`, `DWCP_TOKEN`, `DWCP_TENANT`,
//! `DWCP_DATA_DIR`), which beats the file, which beats the built-in default.
//! `dwcp up` takes only `data_dir` from it (its `--admin` is where it listens).
//!
//! The file is TOML at `DWCP_CONFIG`, else `$XDG_CONFIG_HOME/dwcp/config.toml`,
//! else `~/.config/dwcp/config.toml`:
//!
//! ```toml
//! admin = "https://edge-1.example:8081"
//! tenant = "acme"
//! token = "…"          # keep the file 0600: the CLI warns otherwise
//! ```

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::ArgMatches;
use clap::parser::ValueSource;
use serde::Deserialize;

use crate::cli::Cli;

/// What the settings file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The admin API.
    pub admin: Option<String>,
    /// A bearer token for it.
    pub token: Option<String>,
    /// The tenant of commands given none.
    pub tenant: Option<String>,
    /// The data directory.
    pub data_dir: Option<PathBuf>,
}

/// Where the settings file is looked for.
pub fn path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DWCP_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("dwcp/config.toml"))
}

/// Reads the settings file at `path`; none there is no settings. A named
/// file (`DWCP_CONFIG`) that is missing is an error.
pub fn load(path: &Path, named: bool) -> anyhow::Result<Settings> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named => {
            return Ok(Settings::default());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let settings: Settings = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid: {e}(it may set admin, token, tenant and data_dir)",
            path.display()
        )
    })?;
    #[cfg(unix)]
    if settings.token.is_some() {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            eprintln!(
                "warning: {} holds a token and others can read it: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
    Ok(settings)
}

/// Fills the global options that came from neither a flag nor the
/// environment from the settings file.
pub fn apply(cli: &mut Cli, matches: &ArgMatches) -> anyhow::Result<()> {
    let Some(path) = path() else {
        return Ok(());
    };
    let named = std::env::var_os("DWCP_CONFIG").is_some_and(|p| !p.is_empty());
    let settings = load(&path, named)?;
    let unset = |id: &str| {
        !matches!(
            matches.value_source(id),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        )
    };
    // For `dwcp up`, --admin is where to listen, not a node to talk to: a
    // file written for the CLI must not move a node's admin address.
    let is_up = matches!(cli.command, crate::cli::Command::Up(_));
    if let Some(admin) = settings.admin.filter(|_| unset("admin") && !is_up) {
        cli.admin = admin;
    }
    if let Some(token) = settings.token.filter(|_| unset("token")) {
        cli.token = Some(token);
    }
    if let Some(tenant) = settings.tenant.filter(|_| unset("tenant")) {
        cli.tenant = tenant;
    }
    if let Some(dir) = settings.data_dir.filter(|_| unset("data_dir")) {
        cli.data_dir = Some(dir);
    }
    Ok(())
}
