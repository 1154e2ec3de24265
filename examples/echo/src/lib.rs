//! `echo`: answers with a JSON object describing the request it received:
//! method, path (with query), authority (the `Host` the request was sent
//! to; wasi:http passes it apart from the other headers), headers and the
//! body's length in bytes.

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::types::{IncomingRequest, Method, ResponseOutparam};

struct Echo;

impl Guest for Echo {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let method = match request.method() {
            Method::Get => "GET".to_string(),
            Method::Head => "HEAD".to_string(),
            Method::Post => "POST".to_string(),
            Method::Put => "PUT".to_string(),
            Method::Delete => "DELETE".to_string(),
            Method::Connect => "CONNECT".to_string(),
            Method::Options => "OPTIONS".to_string(),
            Method::Trace => "TRACE".to_string(),
            Method::Patch => "PATCH".to_string(),
            Method::Other(other) => other,
        };
        let path = request.path_with_query().unwrap_or_default();
        let authority = request.authority().unwrap_or_default();
        let mut headers = String::from("{");
        for (i, (name, value)) in request.headers().entries().into_iter().enumerate() {
            if i > 0 {
                headers.push(',');
            }
            headers.push_str(&json_string(&name));
            headers.push(':');
            headers.push_str(&json_string(&String::from_utf8_lossy(&value)));
        }
        headers.push('}');
        let body_length = dwcp_guest::read_body(&request).len();
        let json = format!(
            "{{\"method\":{},\"path\":{},\"authority\":{},\"headers\":{},\"body_length\":{}}}\n",
            json_string(&method),
            json_string(&path),
            json_string(&authority),
            headers,
            body_length
        );
        dwcp_guest::respond(
            out,
            200,
            &[("content-type", "application/json")],
            json.as_bytes(),
        );
    }
}

/// Quotes `s` as a JSON string.
fn json_string(s: &str) -> String {
    let mut quoted = String::with_capacity(s.len() + 2);
    quoted.push('"');
    for c in s.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if (c as u32) < 0x20 => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

dwcp_guest::wasip2::http::proxy::export!(Echo);
