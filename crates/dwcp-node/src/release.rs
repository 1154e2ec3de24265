//! Which version serves a request: the rollout's sticky split by user, and
//! the `x-dwcp-version` header that reaches a live version by name.
//!
//! The split is flagd's `fractional` bucketing (murmur3 x86_32 of a salt
//! and the user key, see `dwcp_release::split`): a user falls in the
//! canary while their bucket is below its weight, so the same user sees the
//! same version throughout and raising the weight only moves users from
//! stable to canary.

use std::borrow::Cow;
use std::net::IpAddr;

use dwcp_release::split::{Side, side};
use hyper::HeaderMap;
use hyper::header::{COOKIE, HeaderName};

use crate::apps::{Arm, LiveApp};

/// The header a tester sends to reach one live version at any weight.
pub const VERSION_HEADER: &str = "x-dwcp-version";

/// The header that names the user unless the app says otherwise.
pub const DEFAULT_USER_HEADER: &str = "x-user-id";

/// Where a request's user key comes from, in order: the app's header, its
/// cookie, a stateful app's key, the client's address.
#[derive(Debug, Clone)]
pub struct UserKeyRule {
    header: HeaderName,
    cookie: Option<String>,
    key_header: Option<HeaderName>,
}

impl UserKeyRule {
    /// The rule of an app with these release and stateful settings. Names
    /// were validated when set; one that no longer parses falls back to the
    /// default.
    pub fn new(settings: &dwcp_store::ReleaseSettings, key_header: Option<&str>) -> Self {
        let header = settings
            .user_header
            .as_deref()
            .and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok())
            .unwrap_or(HeaderName::from_static(DEFAULT_USER_HEADER));
        Self {
            header,
            cookie: settings.user_cookie.clone(),
            key_header: key_header.and_then(|h| HeaderName::from_bytes(h.as_bytes()).ok()),
        }
    }

    /// The request's user key.
    pub fn user_key<'a>(&self, headers: &'a HeaderMap, peer: IpAddr) -> Cow<'a, str> {
        let header = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .filter(|v| !v.is_empty())
        };
        if let Some(user) = header(&self.header) {
            return Cow::Borrowed(user);
        }
        if let Some(user) = self.cookie.as_deref().and_then(|c| cookie(headers, c)) {
            return Cow::Borrowed(user);
        }
        if let Some(key) = self.key_header.as_ref().and_then(header) {
            return Cow::Borrowed(key);
        }
        Cow::Owned(peer.to_string())
    }
}

impl Default for UserKeyRule {
    fn default() -> Self {
        Self::new(&dwcp_store::ReleaseSettings::default(), None)
    }
}

/// The value of cookie `name`, if the request carries it.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
        .filter(|v| !v.is_empty())
}

/// How a request came to its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routed {
    /// By the split (or to the stable version): it counts for a rollout's
    /// analysis and an experiment.
    Split,
    /// By `x-dwcp-version`: a tester's request, counted for neither.
    Header,
}

/// The arm that serves a request to `app`, or why none does. The
/// `x-dwcp-version` header reaches the stable version and the one a
/// rollout or experiment splits toward, nothing else (a version rolled back
/// must not stay reachable by anyone who knows its name).
pub fn pick<'a>(
    app: &'a LiveApp,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Result<(&'a Arm, Routed), String> {
    if let Some(wanted) = headers.get(VERSION_HEADER) {
        let wanted = wanted.to_str().unwrap_or("");
        let canary = app.canary.as_ref().map(|c| &c.arm);
        return std::iter::once(&app.stable)
            .chain(canary)
            .find(|arm| arm.name() == wanted)
            .map(|arm| (arm, Routed::Header))
            .ok_or_else(|| {
                format!("version `{wanted}` does not serve (only the stable version and one rolling out can be named)")
            });
    }
    let arm = match &app.canary {
        Some(canary) if canary.weight_bp > 0 => {
            let user = app.users.user_key(headers, peer);
            match side(&canary.salt, &user, canary.weight_bp) {
                Side::Canary => &canary.arm,
                Side::Stable => &app.stable,
            }
        }
        _ => &app.stable,
    };
    Ok((arm, Routed::Split))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn the_user_key_comes_from_header_then_cookie_then_key_then_address() {
        let settings = dwcp_store::ReleaseSettings {
            user_cookie: Some("uid".into()),
            ..Default::default()
        };
        let rule = UserKeyRule::new(&settings, Some("x-dwcp-key"));
        let peer: IpAddr = "192.0.2.7".parse().expect("address");
        let all = headers(&[
            ("x-user-id", "alice"),
            ("cookie", "a=1; uid=bob"),
            ("x-dwcp-key", "k1"),
        ]);
        assert_eq!(rule.user_key(&all, peer), "alice");
        let no_header = headers(&[("cookie", "a=1; uid=\"bob\""), ("x-dwcp-key", "k1")]);
        assert_eq!(rule.user_key(&no_header, peer), "bob");
        assert_eq!(rule.user_key(&headers(&[("x-dwcp-key", "k1")]), peer), "k1");
        assert_eq!(rule.user_key(&HeaderMap::new(), peer), "192.0.2.7");
        // Another header when the app names one.
        let custom = dwcp_store::ReleaseSettings {
            user_header: Some("x-account".into()),
            ..Default::default()
        };
        let rule = UserKeyRule::new(&custom, None);
        assert_eq!(
            rule.user_key(
                &headers(&[("x-account", "acct-9"), ("x-user-id", "no")]),
                peer
            ),
            "acct-9"
        );
    }
}
