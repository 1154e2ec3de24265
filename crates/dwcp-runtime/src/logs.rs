//! What guests write to stdout and stderr, kept per app.
//!
//! Each app has an [`AppLog`]: a ring of its most recent lines, bounded in
//! bytes, that `dwcp logs` reads and follows. The same lines go to the
//! node's own log with tenant, app and version fields, at most
//! [`NODE_LOG_LINES_PER_SECOND`] per app: a guest that prints in a loop
//! fills its own ring, not the node's disk.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::io::AsyncWrite;
use tokio::sync::broadcast;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use crate::metrics::VersionLabels;

/// Bytes of lines an app's ring keeps by default.
pub const DEFAULT_LOG_BYTES: usize = 1 << 20;

/// A longer line is cut here (and marked) so one write cannot fill a ring.
pub const MAX_LINE: usize = 16 << 10;

/// Guest lines per app and second that also go to the node's log.
pub const NODE_LOG_LINES_PER_SECOND: u32 = 100;

/// Where a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogStream {
    /// The guest's stdout.
    Stdout,
    /// The guest's stderr.
    Stderr,
    /// The node, about the guest: why it was stopped.
    Node,
}

/// One line of an app's log.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Position in the app's log, from 1; increases by one per line.
    pub seq: u64,
    /// When it was written, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The version whose instance wrote it.
    pub version: Arc<str>,
    /// stdout, stderr or the node.
    pub stream: LogStream,
    /// The line, without its newline; invalid UTF-8 replaced.
    pub text: String,
}

struct Ring {
    lines: VecDeque<Arc<LogLine>>,
    bytes: usize,
    next_seq: u64,
    /// The second lines to the node's log are being counted in, how many
    /// went and how many were held back.
    node_second: u64,
    node_sent: u32,
    node_dropped: u64,
}

/// What goes to the node's log for one guest line.
struct NodeLog {
    /// The line itself, within the per-second quota.
    write: bool,
    /// Lines held back in the second before, to report.
    held_back: u64,
}

/// The recent output of one app's guests, every version's.
pub struct AppLog {
    tenant: String,
    app: String,
    capacity: usize,
    ring: Mutex<Ring>,
    followers: broadcast::Sender<Arc<LogLine>>,
}

impl AppLog {
    /// An empty log of `tenant/app` keeping about `capacity` bytes of lines.
    pub fn new(tenant: &str, app: &str, capacity: usize) -> Self {
        Self {
            tenant: tenant.into(),
            app: app.into(),
            capacity,
            ring: Mutex::new(Ring {
                lines: VecDeque::new(),
                bytes: 0,
                next_seq: 1,
                node_second: 0,
                node_sent: 0,
                node_dropped: 0,
            }),
            followers: broadcast::channel(1024).0,
        }
    }

    /// Appends one line.
    pub fn push(&self, version: &Arc<str>, stream: LogStream, text: String) {
        let Ok(mut ring) = self.ring.lock() else {
            return;
        };
        // Read under the lock, never before the previous line's: the ring
        // stays ordered by time as well as by sequence.
        let at_ms = now_ms().max(ring.lines.back().map_or(0, |l| l.at_ms));
        let line = Arc::new(LogLine {
            seq: ring.next_seq,
            at_ms,
            version: version.clone(),
            stream,
            text,
        });
        ring.next_seq += 1;
        ring.bytes += line_cost(&line);
        ring.lines.push_back(line.clone());
        while ring.bytes > self.capacity && ring.lines.len() > 1 {
            if let Some(old) = ring.lines.pop_front() {
                ring.bytes -= line_cost(&old);
            }
        }
        let to_node = self.node_log_quota(&mut ring, &line);
        // Sent under the lock, so that followers get lines in order; a
        // broadcast send never waits. No follower is not an error.
        let _ = self.followers.send(line.clone());
        drop(ring);
        // Written outside the lock: the node's log may be slow to take it.
        if to_node.held_back > 0 {
            tracing::warn!(
                tenant = %self.tenant,
                app = %self.app,
                "{} guest lines kept out of the node's log (over {NODE_LOG_LINES_PER_SECOND}/s); `dwcp logs` has them",
                to_node.held_back
            );
        }
        if to_node.write {
            self.write_node_log(&line);
        }
    }

    /// Whether `line` also goes to the node's log, within the per-second
    /// quota, and how many lines the second before held back.
    fn node_log_quota(&self, ring: &mut Ring, line: &LogLine) -> NodeLog {
        let mut out = NodeLog {
            write: false,
            held_back: 0,
        };
        if line.stream == LogStream::Node {
            // The node logged it already, as a warning.
            return out;
        }
        let second = line.at_ms / 1000;
        if second != ring.node_second {
            out.held_back = ring.node_dropped;
            ring.node_second = second;
            ring.node_sent = 0;
            ring.node_dropped = 0;
        }
        if ring.node_sent >= NODE_LOG_LINES_PER_SECOND {
            ring.node_dropped += 1;
        } else {
            ring.node_sent += 1;
            out.write = true;
        }
        out
    }

    fn write_node_log(&self, line: &LogLine) {
        let stream = match line.stream {
            LogStream::Stdout => "stdout",
            _ => "stderr",
        };
        tracing::info!(
            target: "guest",
            tenant = %self.tenant,
            app = %self.app,
            version = %line.version,
            stream,
            "{}",
            line.text
        );
    }

    /// The kept lines written at or after `since_ms`, oldest first.
    pub fn since(&self, since_ms: u64) -> Vec<Arc<LogLine>> {
        let Ok(ring) = self.ring.lock() else {
            return Vec::new();
        };
        let start = ring.lines.partition_point(|l| l.at_ms < since_ms);
        ring.lines.range(start..).cloned().collect()
    }

    /// Lines as they are written, from now on. Subscribe before reading
    /// [`AppLog::since`] and skip sequence numbers already seen: no line is
    /// then missed between the two.
    pub fn follow(&self) -> broadcast::Receiver<Arc<LogLine>> {
        self.followers.subscribe()
    }

    /// The output streams of one instance of `labels`'s version.
    pub(crate) fn streams(self: &Arc<Self>, labels: &VersionLabels) -> (GuestOutput, GuestOutput) {
        let version: Arc<str> = labels.version.as_str().into();
        (
            GuestOutput {
                log: self.clone(),
                version: version.clone(),
                stream: LogStream::Stdout,
            },
            GuestOutput {
                log: self.clone(),
                version,
                stream: LogStream::Stderr,
            },
        )
    }
}

/// What a kept line counts against the ring's capacity.
fn line_cost(line: &LogLine) -> usize {
    line.text.len() + 64
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A guest's stdout or stderr, as `wasi:cli` hands it out.
#[derive(Clone)]
pub(crate) struct GuestOutput {
    log: Arc<AppLog>,
    version: Arc<str>,
    stream: LogStream,
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            output: self.clone(),
            partial: Vec::new(),
            discarding: false,
        })
    }
}

/// Splits what a guest writes into lines. Writes never block: a line goes
/// into the ring under a short lock.
struct LineWriter {
    output: GuestOutput,
    partial: Vec<u8>,
    /// The current line was cut at [`MAX_LINE`]; the rest of it is dropped.
    discarding: bool,
}

impl LineWriter {
    fn emit(&mut self, cut: bool) {
        let bytes = std::mem::take(&mut self.partial);
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(&bytes);
        let mut text = String::from_utf8_lossy(bytes).into_owned();
        if cut {
            text.push_str(" [line cut]");
        }
        self.output
            .log
            .push(&self.output.version, self.output.stream, text);
    }

    fn write(&mut self, buf: &[u8]) {
        let mut segments = buf.split(|&b| b == b'\n').peekable();
        while let Some(segment) = segments.next() {
            let ended = segments.peek().is_some();
            if !self.discarding {
                let room = MAX_LINE - self.partial.len();
                self.partial
                    .extend_from_slice(&segment[..segment.len().min(room)]);
                if segment.len() > room {
                    self.emit(true);
                    self.discarding = true;
                }
            }
            if ended {
                if !self.discarding {
                    self.emit(false);
                }
                self.discarding = false;
            }
        }
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.get_mut().write(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    /// A last line without a newline is still a line.
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.emit(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    fn labels() -> VersionLabels {
        VersionLabels {
            tenant: "t".into(),
            app: "a".into(),
            version: "v1".into(),
        }
    }

    fn texts(log: &AppLog) -> Vec<String> {
        log.since(0).iter().map(|l| l.text.clone()).collect()
    }

    #[tokio::test]
    async fn writes_are_split_into_lines_and_the_last_one_kept_on_drop() {
        let log = Arc::new(AppLog::new("t", "a", DEFAULT_LOG_BYTES));
        let (out, _) = log.streams(&labels());
        let mut w = Box::into_pin(out.async_stream());
        w.write_all(b"one\ntw").await.unwrap();
        w.write_all(b"o\r\nthree").await.unwrap();
        assert_eq!(texts(&log), ["one", "two"]);
        drop(w);
        assert_eq!(texts(&log), ["one", "two", "three"]);
        let seqs: Vec<u64> = log.since(0).iter().map(|l| l.seq).collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_ring_stays_within_its_capacity() {
        let log = Arc::new(AppLog::new("t", "a", 64 << 10));
        let (out, _) = log.streams(&labels());
        let mut w = Box::into_pin(out.async_stream());
        w.write_all(&vec![b'x'; MAX_LINE * 3]).await.unwrap();
        w.write_all(b"\n").await.unwrap();
        w.write_all(b"after\n").await.unwrap();
        let lines = log.since(0);
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].text.len(), MAX_LINE + " [line cut]".len());
        assert_eq!(lines[1].text, "after");
        for i in 0..10_000 {
            w.write_all(format!("line {i}\n").as_bytes()).await.unwrap();
        }
        let kept = log.since(0);
        let bytes: usize = kept.iter().map(|l| line_cost(l)).sum();
        assert!(bytes <= 64 << 10, "{bytes}");
        assert_eq!(kept.last().unwrap().text, "line 9999");
    }

    #[tokio::test]
    async fn followers_see_new_lines() {
        let log = Arc::new(AppLog::new("t", "a", DEFAULT_LOG_BYTES));
        let mut follower = log.follow();
        log.push(&"v2".into(), LogStream::Node, "stopped".into());
        let line = follower.recv().await.unwrap();
        assert_eq!(&*line.version, "v2");
        assert_eq!(line.stream, LogStream::Node);
    }
}
