//! `broken`: answers `ok` with 200, except for 5% of requests, chosen at
//! random one by one, which get a 500. The bad new version a canary
//! rollout must catch and abort.

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, ResponseOutparam};
use dwcp_guest::wasip2::random::random::get_random_u64;

/// The share of requests that fail, as a threshold on a uniform `u64`:
/// `u64::MAX / 20` is 5% (the comparison is exact to 1 in 2^64, unlike a
/// modulo).
const FAIL_BELOW: u64 = u64::MAX / 20;

struct Broken;

impl Guest for Broken {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        // wasi:random, not a generator seeded in the component: instances
        // start fresh from the same memory image, so they would all draw alike.
        let (status, body): (u16, &[u8]) = if get_random_u64() < FAIL_BELOW {
            (500, b"broken: failed on purpose (5% of requests do)\n")
        } else {
            (200, b"ok\n")
        };
        dwcp_guest::respond(out, status, &[("content-type", "text/plain")], body);
    }
}

dwcp_guest::wasip2::http::proxy::export!(Broken);
