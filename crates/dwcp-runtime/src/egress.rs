//! What a guest may reach with `wasi:http/outgoing-handler`, and the client
//! that enforces it.
//!
//! Deny by default. An app's policy opens host names (exact, or a `*.`
//! suffix, each optionally with a port); even then, the name is resolved
//! here and every address is checked: loopback, private, link-local,
//! shared, multicast and unspecified addresses (and the node's own admin
//! address) are refused unless an `allow_private` CIDR covers them. The
//! connection then goes to the address that was checked, never to a name
//! resolved again, so a DNS answer that changes between check and connect
//! (rebinding) cannot lead the guest into the node's network.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use ipnet::IpNet;
use wasmtime_wasi_http::{Error as HttpError, WasiBody};

use crate::body::CappedBody;

/// How long a connection (DNS included) may take to establish.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the response head may take to arrive.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest outgoing response body a guest may receive.
pub const MAX_EGRESS_RESPONSE: u64 = 16 << 20;

/// One `--allow-host` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    /// `api.example.com`, or `.svc.example` for `*.svc.example`.
    name: String,
    /// Only this port, if given.
    port: Option<u16>,
}

impl HostRule {
    /// Parses `api.example.com`, `api.example.com:8443`, `*.svc.example`,
    /// `*.svc.example:443`.
    pub fn parse(rule: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "--allow-host `{rule}`: {why} (write `api.example.com`, `*.svc.example` or `host:port`)"
            )
        };
        let (host, port) = match rule.rsplit_once(':') {
            Some((host, port)) => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| bad("the port is not a number from 1 to 65535"))?;
                if port == 0 {
                    return Err(bad("the port is not a number from 1 to 65535"));
                }
                (host, Some(port))
            }
            None => (rule, None),
        };
        let host = host.to_ascii_lowercase();
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host.as_str()),
        };
        let label_ok = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        if name.is_empty() || name.len() > 253 || !name.split('.').all(label_ok) {
            return Err(bad("not a host name"));
        }
        Ok(Self {
            name: if wildcard {
                format!(".{name}")
            } else {
                name.to_string()
            },
            port,
        })
    }

    fn matches(&self, host: &str, port: u16) -> bool {
        let host_ok = match self.name.strip_prefix('.') {
            Some(_) => host.len() > self.name.len() && host.ends_with(&self.name),
            None => host == self.name,
        };
        host_ok && self.port.is_none_or(|p| p == port)
    }
}

/// An app's egress policy.
#[derive(Debug, Clone, Default)]
pub struct EgressPolicy {
    /// Hosts the guest may reach by name.
    pub allow_hosts: Vec<HostRule>,
    /// Non-public networks it may reach anyway.
    pub allow_private: Vec<IpNet>,
    /// Addresses of the node itself that must stay out of reach (its admin
    /// API) unless an `allow_private` CIDR names them.
    pub node_addrs: Vec<SocketAddr>,
}

/// Parses an `--allow-private` CIDR (`10.1.0.0/16`, `127.0.0.1/32`, `::1/128`).
pub fn parse_cidr(cidr: &str) -> Result<IpNet, String> {
    cidr.parse::<IpNet>().map_err(|_| {
        format!(
            "--allow-private `{cidr}`: not a CIDR (write it as `10.1.0.0/16` or `127.0.0.1/32`)"
        )
    })
}

impl EgressPolicy {
    /// Whether some rule opens `host:port` by name.
    pub fn allows_host(&self, host: &str, port: u16) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.allow_hosts.iter().any(|r| r.matches(&host, port))
    }

    /// Whether the guest may connect to `addr` (once its name was allowed).
    pub fn allows_addr(&self, addr: SocketAddr) -> bool {
        let ip = canonical(addr.ip());
        // The admin address: exactly, or on any address when it listens on
        // all of them (its own public address is then as good as loopback).
        // Never reachable, whatever CIDR is open: the admin API can deploy
        // and delete, and a guest must not.
        let node = self.node_addrs.iter().any(|n| {
            n.port() == addr.port() && (canonical(n.ip()) == ip || n.ip().is_unspecified())
        });
        if node {
            return false;
        }
        is_public(ip) || self.allow_private.iter().any(|net| net.contains(&ip))
    }

    /// Sends `request` if the policy allows it, to the address it checked.
    pub(crate) async fn send(
        self: Arc<Self>,
        mut request: hyper::Request<WasiBody>,
    ) -> Result<hyper::Response<WasiBody>, HttpError> {
        let uri = request.uri().clone();
        let host = uri.host().ok_or(HttpError::HttpRequestUriInvalid)?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let tls = uri.scheme() == Some(&hyper::http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        if !self.allows_host(&host, port) {
            return Err(HttpError::HttpRequestDenied);
        }
        let addrs: Vec<SocketAddr> = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio::net::lookup_host((host.as_str(), port)),
        )
        .await
        .map_err(|_| HttpError::DnsTimeout)?
        .map_err(|_| HttpError::DestinationNotFound)?
        .collect();
        let addr =
            addrs
                .iter()
                .copied()
                .find(|a| self.allows_addr(*a))
                .ok_or(if addrs.is_empty() {
                    HttpError::DestinationNotFound
                } else {
                    HttpError::DestinationIpProhibited
                })?;
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| HttpError::ConnectionTimeout)?
            .map_err(|_| HttpError::ConnectionRefused)?;
        let io: Box<dyn IoStream> = if tls {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.into(),
            };
            // Hybrid post-quantum key exchange first; classical groups
            // for servers that have none.
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                dwcp_crypto::tls::hybrid_preferred_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|_| HttpError::TlsProtocolError)?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = rustls::pki_types::ServerName::try_from(host.clone())
                .map_err(|_| HttpError::HttpRequestUriInvalid)?;
            let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, stream)
                .await
                .map_err(|_| HttpError::TlsProtocolError)?;
            Box::new(tls)
        } else {
            Box::new(stream)
        };
        let (mut sender, connection) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)),
        )
        .await
        .map_err(|_| HttpError::ConnectionTimeout)?
        .map_err(HttpError::from)?;
        tokio::spawn(connection);
        // Origin form on the wire; the Host header carries the name (and
        // only the name and port: never credentials from the URL).
        let host_header = match uri.port_u16() {
            Some(p) => format!("{}:{p}", uri.host().unwrap_or_default()),
            None => uri.host().unwrap_or_default().to_string(),
        };
        let host_header = hyper::header::HeaderValue::from_str(&host_header)
            .map_err(|_| HttpError::HttpRequestUriInvalid)?;
        request
            .headers_mut()
            .insert(hyper::header::HOST, host_header);
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        *request.uri_mut() = path.parse().map_err(|_| HttpError::HttpRequestUriInvalid)?;
        let response = tokio::time::timeout(FIRST_BYTE_TIMEOUT, sender.send_request(request))
            .await
            .map_err(|_| HttpError::ConnectionReadTimeout)?
            .map_err(HttpError::from)?;
        Ok(response.map(|body| {
            CappedBody::new(body.map_err(HttpError::from), MAX_EGRESS_RESPONSE, || {
                HttpError::HttpResponseBodySize(Some(MAX_EGRESS_RESPONSE))
            })
            .boxed_unsync()
        }))
    }
}

/// A byte stream the client can speak HTTP over: plain TCP or TLS.
trait IoStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> IoStream for T {}

/// IPv6 addresses that carry an IPv4 address (mapped `::ffff:a.b.c.d`,
/// compatible `::a.b.c.d`, NAT64 `64:ff9b::a.b.c.d`, 6to4 `2002:aabb:ccdd::`)
/// are judged as the IPv4 address they lead to.
fn canonical(ip: IpAddr) -> IpAddr {
    let IpAddr::V6(v6) = ip else {
        return ip;
    };
    if let Some(v4) = v6.to_ipv4_mapped() {
        return IpAddr::V4(v4);
    }
    let v4 = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d))
    };
    match v6.segments() {
        // IPv4-compatible (deprecated), but not :: and ::1.
        [0, 0, 0, 0, 0, 0, hi, lo] if hi != 0 => v4(hi, lo),
        // NAT64, well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => v4(hi, lo),
        // 6to4.
        [0x2002, hi, lo, ..] => v4(hi, lo),
        _ => ip,
    }
}

/// Whether `ip` is on the public internet (not loopback, private,
/// link-local, shared, documentation, multicast, broadcast or unspecified).
fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240) // reserved
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let first = seg[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (first == 0x64 && seg[1] == 0xff9b) // NAT64, local-use prefix
                || (first == 0x100 && seg[1..4] == [0, 0, 0]) // discard-only
                || (first == 0x2001 && v6.segments()[1] == 0x0db8)) // documentation
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(hosts: &[&str], private: &[&str]) -> EgressPolicy {
        EgressPolicy {
            allow_hosts: hosts.iter().map(|h| HostRule::parse(h).unwrap()).collect(),
            allow_private: private.iter().map(|c| parse_cidr(c).unwrap()).collect(),
            node_addrs: vec!["127.0.0.1:8081".parse().unwrap()],
        }
    }

    #[test]
    fn host_rules() {
        let p = policy(
            &["api.example.com", "*.svc.example", "pinned.example:8443"],
            &[],
        );
        assert!(p.allows_host("api.example.com", 443));
        assert!(p.allows_host("API.Example.com.", 80));
        assert!(!p.allows_host("x.api.example.com", 443));
        assert!(p.allows_host("a.svc.example", 80));
        assert!(p.allows_host("a.b.svc.example", 80));
        assert!(
            !p.allows_host("svc.example", 80),
            "a suffix rule is not the bare domain"
        );
        assert!(!p.allows_host("evilsvc.example", 80));
        assert!(p.allows_host("pinned.example", 8443));
        assert!(!p.allows_host("pinned.example", 443));
        assert!(
            !EgressPolicy::default().allows_host("api.example.com", 443),
            "deny by default"
        );
        for bad in [
            "",
            "*.",
            "a..b",
            "-a.com",
            "a.com:0",
            "a.com:99999",
            "a.com:x",
            "a/b",
            "*.*.a",
        ] {
            assert!(HostRule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn addresses() {
        let p = policy(&["x"], &[]);
        for public in [
            "93.184.215.14:443",
            "[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:443",
        ] {
            assert!(p.allows_addr(public.parse().unwrap()), "{public}");
        }
        for inner in [
            "127.0.0.1:80",
            "10.1.2.3:80",
            "172.16.0.1:80",
            "192.168.1.1:80",
            "169.254.169.254:80",
            "100.64.0.1:80",
            "0.0.0.0:80",
            "[::1]:80",
            "[fe80::1]:80",
            "[fd00::1]:80",
            "[::ffff:127.0.0.1]:80",
            "[::ffff:10.0.0.1]:80",
            "[::127.0.0.1]:80",
            "[64:ff9b::a9fe:a9fe]:80",
            "[64:ff9b:1::1]:80",
            "[2002:a00:1::]:80",
            "[2002:7f00:1::]:80",
            "[fec0::1]:80",
            "[100::1]:80",
            "192.0.0.8:80",
        ] {
            assert!(!p.allows_addr(inner.parse().unwrap()), "{inner}");
        }
        // NAT64 and 6to4 forms of public addresses stay public.
        assert!(p.allows_addr("[64:ff9b::5db8:d70e]:443".parse().unwrap()));
        assert!(p.allows_addr("[2002:5db8:d70e::1]:443".parse().unwrap()));
        let p = policy(&["x"], &["127.0.0.1/32", "10.0.0.0/8"]);
        assert!(p.allows_addr("127.0.0.1:9000".parse().unwrap()));
        assert!(p.allows_addr("10.9.9.9:80".parse().unwrap()));
        assert!(!p.allows_addr("192.168.1.1:80".parse().unwrap()));
        // The admin address stays out of reach even when its network is open.
        assert!(!p.allows_addr("127.0.0.1:8081".parse().unwrap()));
        let mut p = policy(&["x"], &[]);
        p.node_addrs = vec!["0.0.0.0:8081".parse().unwrap()];
        assert!(
            !p.allows_addr("93.184.215.14:8081".parse().unwrap()),
            "admin on all addresses"
        );
        assert!(p.allows_addr("93.184.215.14:8080".parse().unwrap()));
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("nonsense").is_err());
    }
}
