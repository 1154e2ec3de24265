//! `spin`: a misbehaving guest that never returns; it loops until the node
//! stops it at the app's execution deadline.

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Spin;

impl Guest for Spin {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        let mut n: u64 = 0;
        loop {
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

dwcp_guest::wasip2::http::proxy::export!(Spin);
