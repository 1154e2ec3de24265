//! `fetch`: GETs the URL in its `url` query parameter and answers with the
//! status it got, a newline, and the body. Whether it may is the node's
//! egress policy's decision; a refusal is answered with 502 and the error.

use std::io::Read;

use dwcp_guest::wasip2::exports::http::incoming_handler::Guest;
use dwcp_guest::wasip2::http::outgoing_handler;
use dwcp_guest::wasip2::http::types::{
    Fields, IncomingRequest, OutgoingRequest, ResponseOutparam, Scheme,
};

struct Fetch;

impl Guest for Fetch {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let Some(url) = query_param(&path, "url") else {
            return dwcp_guest::respond(out, 400, &[], b"give the URL to fetch as ?url=...\n");
        };
        match fetch(&url) {
            Ok((status, body)) => {
                let mut answer = format!("{status}\n").into_bytes();
                answer.extend_from_slice(&body);
                dwcp_guest::respond(out, 200, &[("content-type", "text/plain")], &answer);
            }
            Err(e) => dwcp_guest::respond(out, 502, &[], format!("fetch failed: {e}\n").as_bytes()),
        }
    }
}

/// GETs `url`; returns the status and the body.
fn fetch(url: &str) -> Result<(u16, Vec<u8>), String> {
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (Scheme::Https, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (Scheme::Http, rest)
    } else {
        return Err(format!("not an http(s) URL: {url}"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let request = OutgoingRequest::new(Fields::new());
    let set = request
        .set_scheme(Some(&scheme))
        .and_then(|()| request.set_authority(Some(authority)))
        .and_then(|()| request.set_path_with_query(Some(path)));
    set.map_err(|()| format!("malformed URL: {url}"))?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|()| "response already taken".to_string())?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let mut body = Vec::new();
    let incoming = response.consume().map_err(|()| "no body".to_string())?;
    let mut stream = incoming
        .stream()
        .map_err(|()| "no body stream".to_string())?;
    stream.read_to_end(&mut body).map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// The percent-decoded value of `key` in the query of `path`.
fn query_param(path: &str, key: &str) -> Option<String> {
    let query = path.split_once('?')?.1;
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix(key)?.strip_prefix('='))?;
    let mut out = Vec::with_capacity(raw.len());
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

dwcp_guest::wasip2::http::proxy::export!(Fetch);
