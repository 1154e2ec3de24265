//! `dwcp flags`: a tenant's feature flags (flagd's flag-definition format),
//! kept by the node and evaluated over OFREP and for its apps' requests.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;
use comfy_table::{Table, presets::NOTHING};
use serde_json::Value;

use crate::client::AdminClient;
use crate::commands::{percent_encode, print_json, text};

/// `dwcp flags …`: the tenant is the global `--tenant` (`DWCP_TENANT`,
/// else `default`).
#[derive(Subcommand, Debug)]
pub enum FlagsCommand {
    /// Load a flagd flag-definition file: it replaces the tenant's flags
    /// (with --merge, adds to them; its flags win). A malformed file is
    /// refused whole, with its line and reason.
    ///
    /// Example: dwcp flags import flags.json --merge
    Import {
        /// The flagd JSON file (`-`: standard input).
        file: PathBuf,
        /// Add these flags (and `$evaluators`) to the stored ones instead
        /// of replacing them all.
        #[arg(long)]
        merge: bool,
    },
    /// Write the tenant's flag-definition document (flagd's format) to
    /// standard output, or to a file.
    ///
    /// Example: dwcp flags export -o flags.json
    Export {
        /// Where to write it (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
    /// List the tenant's flags: key, state, default variant, variants.
    ///
    /// Example: dwcp flags list --json
    List {
        /// Print JSON: an array of {key, state, default_variant, variants, targeting}.
        #[arg(long)]
        json: bool,
    },
    /// Show one flag's definition.
    ///
    /// Example: dwcp flags get new-checkout --json
    Get {
        /// The flag's key.
        key: String,
        /// Print the definition as JSON (flagd's format).
        #[arg(long)]
        json: bool,
    },
    /// Set one flag's definition from a file holding the JSON of that flag
    /// (`{"state": …, "variants": …, "defaultVariant": …, "targeting": …}`).
    ///
    /// Example: dwcp flags set new-checkout flag.json
    Set {
        /// The flag's key.
        key: String,
        /// The flag's JSON (`-`: standard input).
        file: PathBuf,
    },
    /// Turn a flag on: its variants and targeting apply again.
    ///
    /// Example: dwcp flags enable new-checkout
    Enable {
        /// The flag's key.
        key: String,
    },
    /// Turn a flag off: evaluations answer DISABLED and callers use their
    /// code default.
    ///
    /// Example: dwcp flags disable new-checkout
    Disable {
        /// The flag's key.
        key: String,
    },
    /// Serve a flag's on variant to PERCENT% of users (by targeting key,
    /// flagd's `fractional`) and its off variant to the rest.
    ///
    /// Example: dwcp flags rollout new-checkout 25
    Rollout {
        /// The flag's key.
        key: String,
        /// 0 to 100 (a trailing `%` is fine).
        percent: String,
    },
    /// Delete one flag.
    ///
    /// Example: dwcp flags delete new-checkout
    Delete {
        /// The flag's key.
        key: String,
    },
    /// Make a boolean flag: variants on (true) and off (false), default
    /// off, state ENABLED.
    ///
    /// Example: dwcp flags create new-checkout
    Create {
        /// The flag's key.
        key: String,
    },
}

/// Runs `dwcp flags …` for `tenant`.
pub fn run(client: &AdminClient, tenant: &str, command: FlagsCommand) -> anyhow::Result<()> {
    dwcp_store::validate_label(tenant).with_context(|| format!("--tenant {tenant}"))?;
    let base = format!("/v1/flags/{tenant}");
    let flag = |key: &str| format!("{base}/flags/{}", percent_encode(key));
    match command {
        FlagsCommand::Import { file, merge } => {
            let body = read_input(&file)?;
            let path = if merge {
                format!("{base}?merge=true")
            } else {
                base.clone()
            };
            let out: Value = client
                .put(&path, &body)
                .with_context(|| file.display().to_string())?;
            let names = |field: &str| {
                let keys: Vec<String> = out[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(text)
                    .collect();
                keys.join(", ")
            };
            println!(
                "imported {} into tenant {tenant}: {} flag(s) now",
                file.display(),
                out["flags"].as_u64().unwrap_or(0)
            );
            for (field, label) in [
                ("added", "added"),
                ("changed", "changed"),
                ("removed", "removed"),
            ] {
                let list = names(field);
                if !list.is_empty() {
                    println!("  {label}: {list}");
                }
            }
            Ok(())
        }
        FlagsCommand::Export { out } => match out {
            Some(path) => {
                let mut buffer = Vec::new();
                client.download(&base, &mut buffer)?;
                dwcp_store::write_atomically(&path, &buffer)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                eprintln!("wrote tenant {tenant}'s flags to {}", path.display());
                Ok(())
            }
            None => {
                let mut stdout = std::io::stdout().lock();
                client.download(&base, &mut stdout)?;
                stdout.flush()?;
                Ok(())
            }
        },
        FlagsCommand::List { json } => {
            let rows: Value = client.get(&format!("{base}/flags"))?;
            if json {
                return print_json(&rows);
            }
            let rows = rows.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                println!(
                    "tenant {tenant} has no flags (`dwcp flags create KEY` or `dwcp flags import FILE`)"
                );
                return Ok(());
            }
            let mut table = Table::new();
            *table.style_mut() = NOTHING;
            table.set_header(["KEY", "STATE", "DEFAULT", "VARIANTS", "TARGETING"]);
            for row in rows {
                table.add_row([
                    text(&row["key"]),
                    text(&row["state"]),
                    text(&row["default_variant"]),
                    variants(&row["variants"]),
                    if row["targeting"].as_bool() == Some(true) {
                        "yes".into()
                    } else {
                        "-".into()
                    },
                ]);
            }
            println!("{table}");
            Ok(())
        }
        FlagsCommand::Get { key, json } => {
            let def: Value = client.get(&flag(&key))?;
            if json {
                return print_json(&def);
            }
            println!("key:       {key}");
            println!("state:     {}", text(&def["state"]));
            println!("default:   {}", text(&def["defaultVariant"]));
            println!("variants:  {}", variants(&def["variants"]));
            match def.get("targeting") {
                None | Some(Value::Null) => println!("targeting: -"),
                Some(Value::Object(rule)) if rule.is_empty() => println!("targeting: -"),
                Some(rule) => println!("targeting: {rule}"),
            }
            Ok(())
        }
        FlagsCommand::Set { key, file } => {
            let body = read_input(&file)?;
            let _: Value = client
                .put(&flag(&key), &body)
                .with_context(|| file.display().to_string())?;
            println!("set flag {key} in tenant {tenant}");
            Ok(())
        }
        FlagsCommand::Enable { key } => {
            let _: Value = client.send("POST", &format!("{}/enable", flag(&key)))?;
            println!("enabled flag {key} in tenant {tenant}");
            Ok(())
        }
        FlagsCommand::Disable { key } => {
            let _: Value = client.send("POST", &format!("{}/disable", flag(&key)))?;
            println!("disabled flag {key} in tenant {tenant}: callers get their code default");
            Ok(())
        }
        FlagsCommand::Rollout { key, percent } => {
            let percent = parse_percent(&percent)?;
            let def: Value =
                client.send("POST", &format!("{}/rollout?percent={percent}", flag(&key)))?;
            println!("flag {key} in tenant {tenant}: on for {percent}% of users, by targeting key");
            if def["state"].as_str() == Some("DISABLED") {
                eprintln!("note: the flag is disabled; `dwcp flags enable {key}` turns it on");
            }
            Ok(())
        }
        FlagsCommand::Delete { key } => {
            let _: Value = client.delete(&flag(&key))?;
            println!("deleted flag {key} from tenant {tenant}");
            Ok(())
        }
        FlagsCommand::Create { key } => {
            let _: Value = client.send("POST", &flag(&key))?;
            println!(
                "created flag {key} in tenant {tenant}: boolean, off (`dwcp flags rollout {key} 10` turns it on for 10% of users)"
            );
            Ok(())
        }
    }
}

/// A file's bytes, or standard input's for `-`.
fn read_input(file: &Path) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("cannot read standard input")?;
        return Ok(bytes);
    }
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

/// `25`, `25%` → 25; anything but a whole number from 0 to 100 is refused.
fn parse_percent(s: &str) -> anyhow::Result<u32> {
    let n = s.trim().trim_end_matches('%').trim();
    match n.parse::<u32>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => anyhow::bail!("rollout percent `{s}`: give a whole number from 0 to 100, e.g. 25"),
    }
}

/// `on=true, off=false`.
fn variants(v: &Value) -> String {
    match v.as_object() {
        Some(map) if !map.is_empty() => map
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_percent;

    #[test]
    fn percents_are_whole_numbers_up_to_100() {
        assert_eq!(parse_percent("25").ok(), Some(25));
        assert_eq!(parse_percent("100%").ok(), Some(100));
        assert_eq!(parse_percent("0").ok(), Some(0));
        assert!(parse_percent("101").is_err());
        assert!(parse_percent("12.5").is_err());
        assert!(parse_percent("-1").is_err());
    }
}
