//! `logger`: writes to its stdout and stderr, for `dwcp logs`. With
//! `?lines=N` it prints `line I of N` N times to stdout; then one line to
//! stderr, and it answers how many lines it wrote.

use std::io::Write;

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Logger;

impl Guest for Logger {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let lines: u32 = path
            .split_once('?')
            .and_then(|(_, q)| q.split('&').find_map(|p| p.strip_prefix("lines=")))
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let mut stdout = std::io::stdout().lock();
        for i in 1..=lines {
            let _ = writeln!(stdout, "line {i} of {lines}");
        }
        drop(stdout);
        eprintln!("served {path}");
        let answer = format!("logged {lines} lines\n");
        dwcp_guest::respond(
            out,
            200,
            &[("content-type", "text/plain")],
            answer.as_bytes(),
        );
    }
}

dwcp_guest::wasip2::http::proxy::export!(Logger);
