//! `dwcp tokens`: the admin API's bearer tokens.

use comfy_table::{Table, presets::NOTHING};
use serde_json::Value;

use crate::cli::TokensCommand;
use crate::client::AdminClient;
use crate::commands::{age, percent_encode, print_json, text};

/// Runs `dwcp tokens …`.
pub fn tokens(client: &AdminClient, command: TokensCommand) -> anyhow::Result<()> {
    match command {
        TokensCommand::Create { tenant, name, json } => {
            let mut query = vec![format!("name={}", percent_encode(&name))];
            if let Some(tenant) = &tenant {
                query.push(format!("tenant={}", percent_encode(tenant)));
            }
            let out: Value = client.send("POST", &format!("/v1/tokens?{}", query.join("&")))?;
            if json {
                return print_json(&out);
            }
            let scope = match &tenant {
                Some(t) => format!("tenant {t}"),
                None => "the whole node".into(),
            };
            println!("{}", text(&out["token"]));
            eprintln!(
                "token {} for {scope}: shown once, stored only as a hash (send it as `Authorization: Bearer …`, or DWCP_TOKEN for the CLI)",
                text(&out["id"])
            );
            Ok(())
        }
        TokensCommand::List { json } => {
            let out: Value = client.get("/v1/tokens")?;
            if json {
                return print_json(&out);
            }
            let mut table = Table::new();
            *table.style_mut() = NOTHING;
            table.set_header(["ID", "SCOPE", "NAME", "CREATED"]);
            for row in out.as_array().into_iter().flatten() {
                let scope = match row["tenant"].as_str() {
                    Some(t) => format!("tenant {t}"),
                    None => text(&row["scope"]),
                };
                table.add_row([
                    text(&row["id"]),
                    scope,
                    text(&row["name"]),
                    age(row["created_at"].as_u64()),
                ]);
            }
            println!("{table}");
            Ok(())
        }
        TokensCommand::Revoke { id } => {
            let _: Value = client.delete(&format!("/v1/tokens/{}", percent_encode(&id)))?;
            println!("revoked token {id}");
            Ok(())
        }
    }
}
