//! `heavy-init`: builds a large table at start (the primes below 10
//! million, by a sieve) before it can answer. `GET /?n=K` answers the K-th
//! prime. Its `wizer-initialize` export builds the table, so that
//! `dwcp deploy --preinit` runs it once at deploy and every instance
//! starts with the table in its memory.
//!
//! The WIT in `wit/` is the proxy world plus that export; the `wasi:*`
//! packages in `wit/deps` are copies of those the `wasip2` crate ships.

use std::sync::OnceLock;

use dwcp_guest::wasip2;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

wit_bindgen::generate!({
    world: "heavy-init",
    path: "wit",
    with: {
        "wasi:http/types@0.2.12": wasip2::http::types,
        "wasi:http/outgoing-handler@0.2.12": wasip2::http::outgoing_handler,
        "wasi:io/poll@0.2.12": wasip2::io::poll,
        "wasi:io/error@0.2.12": wasip2::io::error,
        "wasi:io/streams@0.2.12": wasip2::io::streams,
        "wasi:clocks/monotonic-clock@0.2.12": wasip2::clocks::monotonic_clock,
        "wasi:clocks/wall-clock@0.2.12": wasip2::clocks::wall_clock,
        "wasi:random/random@0.2.12": wasip2::random::random,
        "wasi:cli/stdout@0.2.12": wasip2::cli::stdout,
        "wasi:cli/stderr@0.2.12": wasip2::cli::stderr,
        "wasi:cli/stdin@0.2.12": wasip2::cli::stdin,
    },
});

const LIMIT: usize = 10_000_000;

static PRIMES: OnceLock<Vec<u32>> = OnceLock::new();

/// The primes below `LIMIT`: a sieve over a bitset (1.25 MB, freed after),
/// 664,579 primes kept.
fn primes() -> &'static [u32] {
    PRIMES.get_or_init(|| {
        let mut composite = vec![0u64; LIMIT / 64 + 1];
        let mut out = Vec::with_capacity(664_579);
        for n in 2..LIMIT {
            if composite[n / 64] & (1 << (n % 64)) != 0 {
                continue;
            }
            out.push(n as u32);
            // `n * n` overflows a 32-bit usize past 65,535; it is only
            // needed while it is below the limit.
            if n > LIMIT / n {
                continue;
            }
            let mut m = n * n;
            while m < LIMIT {
                composite[m / 64] |= 1 << (m % 64);
                m += n;
            }
        }
        // Zeroed before it is freed: a pre-initialized snapshot keeps
        // every non-zero byte of memory, freed or not.
        composite.fill(0);
        out
    })
}

struct HeavyInit;

impl Guest for HeavyInit {
    fn wizer_initialize() {
        primes();
    }

    fn fail_initialize() {
        panic!("fail-initialize always fails");
    }
}

impl exports::wasi::http::incoming_handler::Guest for HeavyInit {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let n: usize = path
            .split_once("n=")
            .and_then(|(_, n)| n.split('&').next()?.parse().ok())
            .unwrap_or(1);
        let primes = primes();
        let answer = match primes.get(n.wrapping_sub(1)) {
            Some(p) => format!("prime {n} is {p}\n"),
            None => format!("there are {} primes below {LIMIT}\n", primes.len()),
        };
        dwcp_guest::respond(
            out,
            200,
            &[("content-type", "text/plain")],
            answer.as_bytes(),
        );
    }
}

export!(HeavyInit);
