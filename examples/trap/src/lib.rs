//! `trap`: a misbehaving guest that executes `unreachable` on every request.

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Trap;

impl Guest for Trap {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        core::arch::wasm32::unreachable()
    }
}

dwcp_guest::wasip2::http::proxy::export!(Trap);
