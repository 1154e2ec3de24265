//! Small helpers the example guests share: reading a request body and writing a
//! whole response, over the raw `wasi:http` bindings.

use std::io::{Read, Write};

pub use wasip2;
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

/// Reads the request body to its end and returns it.
pub fn read_body(request: &IncomingRequest) -> Vec<u8> {
    let mut body = Vec::new();
    if let Ok(incoming) = request.consume() {
        if let Ok(mut stream) = incoming.stream() {
            // A body the client cut short is answered with what did arrive.
            let _ = stream.read_to_end(&mut body);
        }
    }
    body
}

/// Sends a complete response with the given status, headers and body.
pub fn respond(out: ResponseOutparam, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let fields = Fields::new();
    for (name, value) in headers {
        let _ = fields.append(name, value.as_bytes());
    }
    let response = OutgoingResponse::new(fields);
    let _ = response.set_status_code(status);
    let Ok(outgoing) = response.body() else {
        return;
    };
    ResponseOutparam::set(out, Ok(response));
    if let Ok(mut stream) = outgoing.write() {
        let _ = stream.write_all(body);
        let _ = stream.flush();
    }
    let _ = OutgoingBody::finish(outgoing, None);
}

/// Answers `ok` with 200, or a 500 with `failure` for the share of requests
/// `fail_below` sets as a threshold on a uniform `u64` (`u64::MAX / 200` is
/// 0.5%: exact to 1 in 2^64, unlike a modulo). The draw is `wasi:random`,
/// not a generator seeded in the component: instances start fresh from the
/// same memory image, so they would all draw alike.
pub fn respond_failing_sometimes(out: ResponseOutparam, fail_below: u64, failure: &[u8]) {
    let (status, body): (u16, &[u8]) = if wasip2::random::random::get_random_u64() < fail_below {
        (500, failure)
    } else {
        (200, b"ok\n")
    };
    respond(out, status, &[("content-type", "text/plain")], body);
}

/// Starts a 200 response and returns its body for the caller to stream into.
pub fn start_streaming(out: ResponseOutparam, content_type: &str) -> Option<OutgoingBody> {
    let fields = Fields::new();
    let _ = fields.append("content-type", content_type.as_bytes());
    let response = OutgoingResponse::new(fields);
    let body = response.body().ok()?;
    ResponseOutparam::set(out, Ok(response));
    Some(body)
}
