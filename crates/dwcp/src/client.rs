//! A small client of the admin API.

use std::io::Read;
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde_json::Value;
use ureq::{Agent, SendBody};

/// Speaks JSON to one node's admin API.
pub struct AdminClient {
    agent: Agent,
    base: String,
    token: Option<String>,
}

impl AdminClient {
    /// A client of the admin API at `base` (`http://127.0.0.1:8081`).
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self::with_ca(base, token, None)
    }

    /// A client that, for an `https://` admin API, trusts the certificate
    /// in `ca_pem` (a self-signed node's) instead of the public roots.
    pub fn with_ca(base: &str, token: Option<String>, ca_pem: Option<&[u8]>) -> Self {
        // A certificate that does not parse trusts nothing rather than
        // falling back to the public roots: the handshake then fails.
        let roots = match ca_pem.map(ureq::tls::Certificate::from_pem) {
            Some(Ok(cert)) => ureq::tls::RootCerts::new_with_certs(&[cert]),
            Some(Err(_)) => ureq::tls::RootCerts::new_with_certs(&[]),
            None => ureq::tls::RootCerts::WebPki,
        };
        // Hybrid post-quantum key exchange first, as the node prefers.
        let tls = ureq::tls::TlsConfig::builder()
            .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                dwcp_crypto::tls::hybrid_preferred_provider(),
            ))
            .root_certs(roots)
            .build();
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            // Compiling a large component takes a while; nothing else does.
            .timeout_global(Some(Duration::from_secs(600)))
            .build()
            .into();
        Self {
            agent,
            base: base.trim_end_matches('/').to_string(),
            token,
        }
    }

    /// `request` with the bearer token, if there is one.
    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(token) => request.header("authorization", format!("Bearer {token}")),
            None => request,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn unreachable(&self) -> String {
        format!(
            "cannot reach the admin API at {}: is `dwcp up` running? (set --admin or DWCP_ADMIN)",
            self.base
        )
    }

    /// GET `path` and decode the JSON answer.
    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let mut request = self.agent.get(self.url(path));
        request = self.authorized(request);
        let response = request.call().with_context(|| self.unreachable())?;
        decode(response)
    }

    /// GET `path` and decode the JSON answer; `None` when there is no such
    /// thing (404).
    pub fn get_optional<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Option<T>> {
        let mut request = self.agent.get(self.url(path));
        request = self.authorized(request);
        let response = request.call().with_context(|| self.unreachable())?;
        if response.status() == 404 {
            return Ok(None);
        }
        decode(response).map(Some)
    }

    /// POST `body` as JSON to `path` and decode the JSON answer.
    pub fn post_json<T: DeserializeOwned>(&self, path: &str, body: &Value) -> anyhow::Result<T> {
        let mut request = self
            .agent
            .post(self.url(path))
            .header("content-type", "application/json");
        request = self.authorized(request);
        let response = request
            .send(body.to_string().as_bytes())
            .with_context(|| self.unreachable())?;
        decode(response)
    }

    /// DELETE `path` and decode the JSON answer.
    pub fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let mut request = self.agent.delete(self.url(path));
        request = self.authorized(request);
        let response = request.call().with_context(|| self.unreachable())?;
        decode(response)
    }

    /// PUT `body` to `path` and decode the JSON answer.
    pub fn put<T: DeserializeOwned>(&self, path: &str, body: &[u8]) -> anyhow::Result<T> {
        let mut request = self
            .agent
            .put(self.url(path))
            .header("content-type", "application/octet-stream");
        request = self.authorized(request);
        let response = request.send(body).with_context(|| self.unreachable())?;
        decode(response)
    }

    /// POST, PUT or PATCH `path` with no body (the query says it all) and
    /// decode the JSON answer.
    pub fn send<T: DeserializeOwned>(&self, method: &str, path: &str) -> anyhow::Result<T> {
        let url = self.url(path);
        let mut request = match method {
            "POST" => self.agent.post(url),
            "PUT" => self.agent.put(url),
            _ => self.agent.patch(url),
        };
        request = self.authorized(request);
        let response = request.send_empty().with_context(|| self.unreachable())?;
        decode(response)
    }

    /// POST the file's bytes to `path`, showing upload progress and then a
    /// spinner while the node compiles (on a terminal only).
    pub fn upload<T: DeserializeOwned>(
        &self,
        path: &str,
        bytes: Vec<u8>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let len = bytes.len() as u64;
        let bar = ProgressBar::new(len).with_style(
            ProgressStyle::with_template(
                "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar.set_message("uploading");
        let reader = Progress {
            inner: std::io::Cursor::new(bytes),
            bar: bar.clone(),
        };
        let mut request = self
            .agent
            .post(self.url(path))
            .header("content-type", "application/wasm")
            .header("content-length", len.to_string());
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        request = self.authorized(request);
        let response = request
            .send(SendBody::from_owned_reader(reader))
            .with_context(|| self.unreachable());
        bar.finish_and_clear();
        decode(response?)
    }
}

impl AdminClient {
    /// GET `path`, an answer of newline-delimited JSON, and hand each line
    /// to `each` as it arrives; with `open_ended`, without a time limit
    /// (`logs --follow` reads until the node stops or Ctrl-C).
    pub fn get_lines(
        &self,
        path: &str,
        open_ended: bool,
        mut each: impl FnMut(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut request = self.agent.get(self.url(path));
        if open_ended {
            request = request.config().timeout_global(None).build();
        }
        request = self.authorized(request);
        let mut response = request.call().with_context(|| self.unreachable())?;
        if !response.status().is_success() {
            return decode::<Value>(response).map(drop);
        }
        let reader = std::io::BufReader::new(response.body_mut().as_reader());
        for line in std::io::BufRead::lines(reader) {
            let line = line.context("the admin API's answer broke off")?;
            if !line.is_empty() {
                each(&line)?;
            }
        }
        Ok(())
    }
}

impl AdminClient {
    /// GET `path` into `out`, without a time limit (a backup takes as long
    /// as its artifacts take to copy); returns the bytes written.
    pub fn download(&self, path: &str, out: &mut impl std::io::Write) -> anyhow::Result<u64> {
        let mut request = self
            .agent
            .get(self.url(path))
            .config()
            .timeout_global(None)
            .build();
        request = self.authorized(request);
        let mut response = request.call().with_context(|| self.unreachable())?;
        if !response.status().is_success() {
            return decode::<Value>(response).map(|_| 0);
        }
        let mut body = response.body_mut().with_config().limit(u64::MAX).reader();
        std::io::copy(&mut body, out).context("the download broke off")
    }
}

/// Decodes a JSON answer, turning `{"error": …}` into an error.
fn decode<T: DeserializeOwned>(
    mut response: ureq::http::Response<ureq::Body>,
) -> anyhow::Result<T> {
    let status = response.status();
    let text = response
        .body_mut()
        .read_to_string()
        .context("cannot read the admin API's answer")?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error")?.as_str().map(str::to_string))
            .unwrap_or_else(|| text.trim().to_string());
        bail!("{message} (HTTP {})", status.as_u16());
    }
    serde_json::from_str(&text)
        .with_context(|| format!("unexpected answer from the admin API: {text}"))
}

/// Runs `work` under a spinner saying `message` (on a terminal only:
/// indicatif draws nothing when stderr is not one).
pub fn with_spinner<T>(message: &str, work: impl FnOnce() -> T) -> T {
    let spinner = ProgressBar::new_spinner().with_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    spinner.set_message(message.to_string());
    spinner.enable_steady_tick(Duration::from_millis(100));
    let out = work();
    spinner.finish_and_clear();
    out
}

/// A reader that advances a progress bar; once everything is sent, the bar
/// turns into a spinner: the node is compiling.
struct Progress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        if n == 0
            && !self.bar.is_finished()
            && self.bar.position() == self.bar.length().unwrap_or(0)
        {
            self.bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            self.bar.set_message("compiling");
            self.bar.enable_steady_tick(Duration::from_millis(100));
        }
        Ok(n)
    }
}
