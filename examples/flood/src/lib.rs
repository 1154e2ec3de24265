//! `flood`: a misbehaving guest that answers 200 and then streams a body that
//! never ends; the node cuts it off at the app's response size cap.

use std::io::Write;

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Flood;

impl Guest for Flood {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let Some(body) = dwcp_guest::start_streaming(out, "application/octet-stream") else {
            return;
        };
        let Ok(mut stream) = body.write() else {
            return;
        };
        let chunk = [b'x'; 64 * 1024];
        // Stops only when the host closes the stream.
        while stream.write_all(&chunk).is_ok() {}
    }
}

dwcp_guest::wasip2::http::proxy::export!(Flood);
