//! `env`: answers with its environment variables, one `KEY=VALUE` per line,
//! sorted: what an app's config and secrets look like from inside.

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Env;

impl Guest for Env {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let mut vars: Vec<String> = std::env::vars()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        vars.sort();
        dwcp_guest::respond(
            out,
            200,
            &[("content-type", "text/plain")],
            vars.concat().as_bytes(),
        );
    }
}

dwcp_guest::wasip2::http::proxy::export!(Env);
