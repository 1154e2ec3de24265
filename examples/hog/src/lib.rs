//! `hog`: a misbehaving guest that allocates memory without end; the node's
//! memory limit refuses the growth and the request fails, alone.

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, ResponseOutparam};

struct Hog;

impl Guest for Hog {
    fn handle(_request: IncomingRequest, _out: ResponseOutparam) {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every page so the memory is really used, not only reserved.
            hoard.push(std::hint::black_box(vec![0xA5; 1 << 20]));
        }
    }
}

dwcp_guest::wasip2::http::proxy::export!(Hog);
