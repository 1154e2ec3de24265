//! `hello`: answers every request with `Hello, world!`.

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Hello;

impl Guest for Hello {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        dwcp_guest::respond(
            out,
            200,
            &[("content-type", "text/plain")],
            b"Hello, world!\n",
        );
    }
}

dwcp_guest::wasip2::http::proxy::export!(Hello);
