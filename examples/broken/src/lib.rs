//! `broken`: answers `ok` with 200, except for 5% of requests, chosen at
//! random one by one, which get a 500. The bad new version a canary
//! rollout must catch and abort.

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Broken;

impl Guest for Broken {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        dwcp_guest::respond_failing_sometimes(
            out,
            u64::MAX / 20,
            b"broken: failed on purpose (5% of requests do)\n",
        );
    }
}

dwcp_guest::wasip2::http::proxy::export!(Broken);
