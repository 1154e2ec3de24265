//! `counter`: a stateful guest (`dwcp deploy --stateful`). Each key has its
//! own instance, so the count below is per key: POST adds one and answers
//! the new count, GET answers the current one. `POST /?pad=N` also sizes a
//! heap buffer to N bytes, filled with a pattern, to give checkpoints
//! something to carry; each POST then changes 16 places in it (at most 16
//! pages), as a real heap changes a little between requests. `POST /?panic`
//! adds one and then panics: the guest traps, and its key must resume from
//! its last checkpoint, without that increment.

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
        let post = matches!(request.method(), Method::Post);
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
        PAD.with_borrow_mut(|buf| {
            if let Some(len) = pad {
                let old = buf.len();
                buf.resize(len, 0);
                // Words of a small vocabulary in a pseudo-random order:
                // text-like, compressible, not periodic.
                const WORDS: [&[u8]; 8] = [
                    b"state ",
                    b"of ",
                    b"the ",
                    b"key ",
                    b"counter ",
                    b"request ",
                    b"heap ",
                    b"page ",
                ];
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ old as u64;
                let mut at = old;
                while at < len {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    for &b in WORDS[(x % 8) as usize] {
                        if at < len {
                            buf[at] = b;
                            at += 1;
                        }
                    }
                }
            }
            if !buf.is_empty() && post {
                for spot in 0..16u64 {
                    let at = (count
                        .wrapping_mul(2_654_435_761)
                        .wrapping_add(spot * 40_503)) as usize
                        % buf.len();
                    buf[at] = count as u8;
                }
            }
        });
        if path.contains("panic") {
            panic!("asked to panic at count {count}");
        }
        dwcp_guest::respond(
            out,
            200,
            &[("content-type", "text/plain")],
            format!("{count}\n").as_bytes(),
        );
    }
}

dwcp_guest::wasip2::http::proxy::export!(Counter);
