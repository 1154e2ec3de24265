//! Response bodies: the guest's, capped in size, or a short text of the node's.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
/// The error type of request and response bodies.
pub use wasmtime_wasi_http::Error as HttpError;

/// The body of every response a node sends.
pub type ResponseBody = UnsyncBoxBody<Bytes, HttpError>;

/// A response of the node itself (not of a guest): `status` with a one-line
/// text reason.
pub fn text_response(status: u16, reason: &str) -> hyper::Response<ResponseBody> {
    let body = Full::new(Bytes::from(format!("{reason}\n")))
        .map_err(|never| match never {})
        .boxed_unsync();
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A body that fails once more than `cap` bytes have passed through it.
/// Failing a response body makes hyper reset the connection: the client sees
/// a cut-off response rather than a complete-looking truncated one.
pub(crate) struct CappedBody<B> {
    inner: B,
    seen: u64,
    cap: u64,
    overflow: Option<Box<dyn FnOnce() -> HttpError + Send>>,
    stopped: Option<Arc<AtomicBool>>,
}

impl<B> CappedBody<B> {
    /// Wraps `inner`; `overflow` is called once, when the cap is passed, and
    /// gives the error the body ends with.
    pub(crate) fn new(
        inner: B,
        cap: u64,
        overflow: impl FnOnce() -> HttpError + Send + 'static,
    ) -> Self {
        Self {
            inner,
            seen: 0,
            cap,
            overflow: Some(Box::new(overflow)),
            stopped: None,
        }
    }

    /// Makes the end of `inner` an error if `stopped` is set by then: a
    /// guest stopped mid-stream ends its body channel just as a guest that
    /// finished does, and the client must not take the rest as complete.
    pub(crate) fn failing_if(mut self, stopped: Arc<AtomicBool>) -> Self {
        self.stopped = Some(stopped);
        self
    }
}

impl<B> Body for CappedBody<B>
where
    B: Body<Data = Bytes, Error = HttpError> + Unpin,
{
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let Some(overflow) = self.overflow.take() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.seen += data.len() as u64;
            if self.seen > self.cap {
                return Poll::Ready(Some(Err(overflow())));
            }
        }
        self.overflow = Some(overflow);
        if let Poll::Ready(None) = &polled
            && self
                .stopped
                .as_ref()
                .is_some_and(|s| s.load(Ordering::Acquire))
        {
            self.overflow = None;
            return Poll::Ready(Some(Err(HttpError::HttpResponseIncomplete)));
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.overflow.is_none() || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cap_cuts_off_the_body_once() {
        let inner = Full::new(Bytes::from(vec![0u8; 100])).map_err(|never| match never {});
        let body = CappedBody::new(inner, 99, || HttpError::HttpResponseBodySize(Some(99)));
        assert!(body.collect().await.is_err());

        let inner = Full::new(Bytes::from(vec![0u8; 99])).map_err(|never| match never {});
        let body = CappedBody::new(inner, 99, || HttpError::HttpResponseBodySize(Some(99)));
        assert_eq!(body.collect().await.unwrap().to_bytes().len(), 99);
    }

    #[tokio::test]
    async fn a_stopped_guest_body_ends_in_error() {
        let stopped = Arc::new(AtomicBool::new(true));
        let inner = Full::new(Bytes::from_static(b"partial")).map_err(|never| match never {});
        let body = CappedBody::new(inner, 1 << 20, || HttpError::HttpResponseBodySize(None))
            .failing_if(stopped);
        assert!(body.collect().await.is_err());
    }

    #[test]
    fn text_response_has_reason() {
        let r = text_response(404, "no app");
        assert_eq!(r.status(), 404);
    }
}
