//! `counter`: a stateful guest (`dwcp deploy --stateful`). Each key has its
//! own instance, so the count below is per key: POST adds one and answers
//! the new count, GET answers the current one. `POST /?pad=N` also grows a
//! heap buffer to N bytes (kept, filled with a pattern that changes with
//! the count), to give checkpoints something to carry.

use std::cell::RefCell;

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};

thread_local! {
    static COUNT: RefCell<u64> = const { RefCell::new(0) };
    static PAD: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

struct Counter;

impl Guest for Counter {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let pad = path
            .split_once("pad=")
            .and_then(|(_, n)| n.split('&').next()?.parse::<usize>().ok());
        let count = match request.method() {
            Method::Post => COUNT.with_borrow_mut(|c| {
                *c += 1;
                *c
            }),
            Method::Get => COUNT.with_borrow(|c| *c),
            _ => {
                dwcp_guest::respond(out, 405, &[], b"GET or POST\n");
                return;
            }
        };
        if let Some(len) = pad {
            PAD.with_borrow_mut(|pad| {
                pad.resize(len, 0);
                // One byte in 64 changes per count: a heap that is mostly
                // the same between checkpoints, as real ones are.
                for i in (0..len).step_by(64) {
                    pad[i] = (i as u64 ^ count) as u8;
                }
            });
        }
        dwcp_guest::respond(out, 200, &[("content-type", "text/plain")], format!("{count}\n").as_bytes());
    }
}

dwcp_guest::wasip2::http::proxy::export!(Counter);
