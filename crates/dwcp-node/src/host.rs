//! From a `Host` header to the app it names.

use std::borrow::Cow;

/// Turns `APP.TENANT.SUFFIX[:port]` into the app key `app.tenant`, ignoring
/// case, port and a trailing dot. `None` if the host does not have that
/// form. Borrows when the host is already lowercase, so the common request
/// allocates nothing here.
pub fn app_key<'a>(host: &'a str, suffix: &str) -> Option<Cow<'a, str>> {
    let host = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.len() <= suffix.len() + 1 {
        return None;
    }
    let (rest, tail) = host.split_at(host.len() - suffix.len() - 1);
    if !tail.as_bytes()[0].eq_ignore_ascii_case(&b'.') || !tail[1..].eq_ignore_ascii_case(suffix) {
        return None;
    }
    let (app, tenant) = rest.split_once('.')?;
    if app.is_empty() || tenant.is_empty() || tenant.contains('.') {
        return None;
    }
    if rest.bytes().any(|b| b.is_ascii_uppercase()) {
        Some(Cow::Owned(rest.to_ascii_lowercase()))
    } else {
        Some(Cow::Borrowed(rest))
    }
}

/// The key under which `tenant/app` is served: `app.tenant`.
pub fn key_of(tenant: &str, app: &str) -> String {
    format!("{app}.{tenant}")
}

/// Splits an app key back into `(tenant, app)`.
pub fn split_key(key: &str) -> (&str, &str) {
    let (app, tenant) = key.split_once('.').unwrap_or((key, ""));
    (tenant, app)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(host: &str, suffix: &str) -> Option<String> {
        app_key(host, suffix).map(Cow::into_owned)
    }

    #[test]
    fn host_forms() {
        let hello = Some("hello.demo".to_string());
        assert_eq!(key("hello.demo.localhost", "localhost"), hello);
        assert_eq!(key("HELLO.Demo.localhost:8080", "localhost"), hello);
        assert_eq!(key("hello.demo.LOCALHOST", "localhost"), hello);
        assert_eq!(key("hello.demo.localhost.", "localhost"), hello);
        assert_eq!(
            key("a.b.apps.example.com", "apps.example.com"),
            Some("a.b".into())
        );
        assert_eq!(key("localhost", "localhost"), None);
        assert_eq!(key("demo.localhost", "localhost"), None);
        assert_eq!(key(".localhost", "localhost"), None);
        assert_eq!(key("x.hello.demo.localhost", "localhost"), None);
        assert_eq!(key("hello.demo.example.com", "localhost"), None);
        assert_eq!(key("hello.demoxlocalhost", "localhost"), None);
        assert_eq!(key("", "localhost"), None);
        assert_eq!(split_key("hello.demo"), ("demo", "hello"));
        assert_eq!(key_of("demo", "hello"), "hello.demo");
    }
}
