//! The web dashboard: a static page at `/ui` on the admin address that
//! shows the node live and drives rollouts (`docs/dashboard.md`).
//!
//! The page, its script and its style are embedded in the binary as they
//! are in `dashboard/` (no build step, nothing fetched from elsewhere). They
//! hold no data, so they are served without a token: every number the page
//! shows comes from a `/v1/…` call the page makes with the token the
//! operator types in. That is why the admin router merges these routes
//! after its token layer: axum applies a layer only to the routes that
//! exist when it is added.

use axum::Router;
use axum::http::{HeaderName, header};
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;

const INDEX: &str = include_str!("../dashboard/index.html");
const SCRIPT: &str = include_str!("../dashboard/app.js");
const STYLE: &str = include_str!("../dashboard/style.css");

/// The node's own files only: no inline script or style (data the page
/// shows can never run as code), no other origin to load from or send
/// to, no framing, no form posting anywhere.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// The dashboard's routes: the page at `/ui`, its files under `/ui/`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/ui",
            get(|| async { asset("text/html; charset=utf-8", INDEX) }),
        )
        // The page links its files by absolute path, so either form works;
        // one canonical address keeps bookmarks alike.
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route(
            "/ui/app.js",
            get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
        )
        .route(
            "/ui/style.css",
            get(|| async { asset("text/css; charset=utf-8", STYLE) }),
        )
}

/// One embedded file with the headers every dashboard response carries.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    let headers: [(HeaderName, &'static str); 5] = [
        (header::CONTENT_TYPE, content_type),
        // A node upgrade changes the files; a stale script against a newer
        // API would show wrong numbers.
        (header::CACHE_CONTROL, "no-store"),
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    (headers, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_links_only_files_that_are_served() {
        for path in ["/ui/app.js", "/ui/style.css"] {
            assert!(INDEX.contains(&format!("\"{path}\"")), "{path}");
        }
        // Under the policy an inline script or style would not run: the
        // page must have none.
        assert!(!INDEX.contains("<script>") && !INDEX.contains("<style"));
        assert!(!INDEX.contains(" style=") && !INDEX.contains(" onclick="));
        assert!(!SCRIPT.contains("innerHTML"), "data goes in as text only");
    }
}
