//! Tenant and app names: DNS labels, because requests reach apps by host name.

use std::fmt;

/// Why a tenant or app name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    /// The `TENANT/APP` form was not followed.
    #[error("expected TENANT/APP (for example `demo/hello`), got `{0}`")]
    NotTenantSlashApp(String),
    /// A part is not a DNS label.
    #[error(
        "`{0}` is not a valid name: use 1 to 63 lowercase letters, digits or '-', not starting or ending with '-'"
    )]
    NotDnsLabel(String),
}

/// Checks that `name` is a DNS label in lowercase (RFC 1123): requests reach
/// apps through `APP.TENANT.localhost`, so anything else could never be
/// addressed.
pub fn validate_label(name: &str) -> Result<(), NameError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(NameError::NotDnsLabel(name.to_string()))
    }
}

/// A tenant and one of its apps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId {
    /// The tenant's name.
    pub tenant: String,
    /// The app's name within the tenant.
    pub app: String,
}

impl AppId {
    /// Builds an id from two names, validating both.
    pub fn new(tenant: &str, app: &str) -> Result<Self, NameError> {
        validate_label(tenant)?;
        validate_label(app)?;
        Ok(Self {
            tenant: tenant.to_string(),
            app: app.to_string(),
        })
    }

    /// Parses `TENANT/APP`.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        match s.split_once('/') {
            Some((tenant, app)) if !app.contains('/') => Self::new(tenant, app),
            _ => Err(NameError::NotTenantSlashApp(s.to_string())),
        }
    }

    /// The key under which the app is stored: `tenant/app`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.tenant, self.app)
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tenant, self.app)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for good in ["a", "hello", "a-b", "x1", &"a".repeat(63)] {
            assert_eq!(validate_label(good), Ok(()), "{good}");
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", "ü", &"a".repeat(64)] {
            assert!(validate_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_tenant_slash_app() {
        let id = AppId::parse("demo/hello").unwrap();
        assert_eq!((id.tenant.as_str(), id.app.as_str()), ("demo", "hello"));
        assert_eq!(id.to_string(), "demo/hello");
        assert!(matches!(
            AppId::parse("hello"),
            Err(NameError::NotTenantSlashApp(_))
        ));
        assert!(matches!(
            AppId::parse("a/b/c"),
            Err(NameError::NotTenantSlashApp(_))
        ));
        assert!(matches!(
            AppId::parse("Demo/hello"),
            Err(NameError::NotDnsLabel(_))
        ));
    }
}
