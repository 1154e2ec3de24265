//! `kv`: a stateful guest (`dwcp deploy --stateful`): a key-value store per
//! key. `PUT /NAME` stores the body under NAME, `GET /NAME` answers it (404
//! when absent), `DELETE /NAME` removes it, `GET /` answers how many entries
//! there are. `POST /fill?n=N` stores N generated entries `key-00000000`…;
//! `POST /churn?updates=U&inserts=I&seed=S` rewrites U of them and adds I
//! new ones (for benchmarks: a busy store between checkpoints).

use std::cell::RefCell;
use std::collections::HashMap;

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};

thread_local! {
    static ENTRIES: RefCell<HashMap<String, Vec<u8>>> = RefCell::new(HashMap::new());
}

struct Kv;

impl Guest for Kv {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let (path, query) = path.split_once('?').unwrap_or((&path, ""));
        let name = path.trim_start_matches('/').to_string();
        let text = [("content-type", "text/plain")];
        match (request.method(), name.as_str()) {
            (Method::Get, "") => {
                let n = ENTRIES.with_borrow(|e| e.len());
                dwcp_guest::respond(out, 200, &text, format!("{n}\n").as_bytes());
            }
            (Method::Post, "fill") => {
                let n = query
                    .strip_prefix("n=")
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                ENTRIES.with_borrow_mut(|e| {
                    for i in 0..n {
                        e.insert(
                            format!("key-{i:08}"),
                            format!("value {i} {}", i * 7919).into_bytes(),
                        );
                    }
                });
                let len = ENTRIES.with_borrow(|e| e.len());
                dwcp_guest::respond(out, 200, &text, format!("{len}\n").as_bytes());
            }
            (Method::Post, "churn") => {
                let param = |name: &str| {
                    query
                        .split('&')
                        .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
                        .and_then(|v| v.parse::<u64>().ok())
                        .unwrap_or(0)
                };
                let (updates, inserts, seed) = (param("updates"), param("inserts"), param("seed"));
                ENTRIES.with_borrow_mut(|e| {
                    let len = e.len().max(1) as u64;
                    let mut x = seed | 1;
                    for _ in 0..updates {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let i = x % len;
                        e.insert(
                            format!("key-{i:08}"),
                            format!("value {i} round {seed}").into_bytes(),
                        );
                    }
                    for i in 0..inserts {
                        e.insert(
                            format!("new-{seed}-{i}"),
                            format!("inserted {i} in round {seed}").into_bytes(),
                        );
                    }
                });
                let len = ENTRIES.with_borrow(|e| e.len());
                dwcp_guest::respond(out, 200, &text, format!("{len}\n").as_bytes());
            }
            (Method::Put, name) if !name.is_empty() => {
                let body = dwcp_guest::read_body(&request);
                ENTRIES.with_borrow_mut(|e| e.insert(name.to_string(), body));
                dwcp_guest::respond(out, 204, &[], b"");
            }
            (Method::Get, name) => match ENTRIES.with_borrow(|e| e.get(name).cloned()) {
                Some(value) => dwcp_guest::respond(
                    out,
                    200,
                    &[("content-type", "application/octet-stream")],
                    &value,
                ),
                None => dwcp_guest::respond(out, 404, &text, b"no such entry\n"),
            },
            (Method::Delete, name) => {
                let existed = ENTRIES.with_borrow_mut(|e| e.remove(name).is_some());
                dwcp_guest::respond(out, if existed { 204 } else { 404 }, &[], b"");
            }
            _ => dwcp_guest::respond(out, 405, &text, b"GET, PUT or DELETE /NAME\n"),
        }
    }
}

dwcp_guest::wasip2::http::proxy::export!(Kv);
