//! `flaky`: answers `ok` with 200, except for 0.5% of requests, chosen at
//! random one by one, which get a 500. A version that is good but not
//! spotless: the baseline a canary is compared with.

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Flaky;

impl Guest for Flaky {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        dwcp_guest::respond_failing_sometimes(
            out,
            u64::MAX / 200,
            b"flaky: failed on purpose (0.5% of requests do)\n",
        );
    }
}

dwcp_guest::wasip2::http::proxy::export!(Flaky);
