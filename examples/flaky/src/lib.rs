//! `flaky`: answers `ok` with 200, except for 0.5% of requests, chosen at
//! random one by one, which get a 500. A version that is good but not
//! spotless: the baseline a canary is compared with.

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, ResponseOutparam};
use dwcp_guest::wasip2::random::random::get_random_u64;

/// The share of requests that fail, as a threshold on a uniform `u64`:
/// `u64::MAX / 200` is 0.5% (the comparison is exact to 1 in 2^64, unlike
/// a modulo).
const FAIL_BELOW: u64 = u64::MAX / 200;

struct Flaky;

impl Guest for Flaky {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        // wasi:random, not a generator seeded in the component: instances
        // start fresh from the same memory image, so they would all draw alike.
        let (status, body): (u16, &[u8]) = if get_random_u64() < FAIL_BELOW {
            (500, b"flaky: failed on purpose (0.5% of requests do)\n")
        } else {
            (200, b"ok\n")
        };
        dwcp_guest::respond(out, status, &[("content-type", "text/plain")], body);
    }
}

dwcp_guest::wasip2::http::proxy::export!(Flaky);
