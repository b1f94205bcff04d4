//! gRFC A6 retries: the throttle shared by a client's calls, and the
//! replay buffer that lets a call's request be sent again.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tonic::Status;
use tonic::body::Body;

use crate::codegen::RetryThrottlingSpec;

/// gRFC A6 caps attempts at 5 whatever the policy says.
pub(crate) const MAX_ATTEMPTS: u32 = 5;

/// Request bytes kept for replay per call (grpc-go's default).
pub(crate) const REPLAY_PER_CALL: usize = 256 * 1024;

/// Request bytes kept for replay by all calls of a client together.
pub(crate) const REPLAY_PER_CLIENT: usize = 16 * 1024 * 1024;

/// The retry throttle: a token bucket in thousandths of a token. Each
/// retryable failure takes a token, each success gives back `token_ratio`;
/// retries stop while the bucket holds no more than half of `max_tokens`.
pub(crate) struct Throttle {
    milli: AtomicU64,
    max: u64,
    ratio: u64,
}

impl Throttle {
    pub(crate) fn new(spec: RetryThrottlingSpec) -> Throttle {
        let max = u64::from(spec.max_tokens) * 1000;
        Throttle { milli: AtomicU64::new(max), max, ratio: (spec.token_ratio * 1000.0).round() as u64 }
    }

    /// A retryable failure; true when a retry is still allowed.
    pub(crate) fn failure(&self) -> bool {
        let before = self
            .milli
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| Some(t.saturating_sub(1000)))
            .unwrap_or(0);
        before.saturating_sub(1000) > self.max / 2
    }

    /// A call that succeeded (or failed with a code not worth retrying).
    pub(crate) fn success(&self) {
        let _ = self.milli.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
            (t < self.max).then(|| (t + self.ratio).min(self.max))
        });
    }

    /// Tokens now, for tests.
    #[cfg(test)]
    pub(crate) fn tokens(&self) -> f64 {
        self.milli.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

enum Recorded {
    Data(Bytes),
    Trailers(http::HeaderMap),
}

struct Recording {
    source: Body,
    frames: Vec<Recorded>,
    /// Frames dropped when the buffer overflowed.
    dropped: usize,
    bytes: usize,
    ended: bool,
    overflowed: bool,
    /// Attempts waiting for the source's next frame besides the one
    /// polling it (hedges read the same request concurrently).
    waiting: Vec<std::task::Waker>,
}

impl Recording {
    fn wake_waiting(&mut self) {
        for waker in self.waiting.drain(..) {
            waker.wake();
        }
    }
}

/// A call's request body, recorded as it is sent so that a retry can send
/// it again, up to the per-call and per-client limits. Past them the call
/// is committed to its current attempt.
pub(crate) struct Replay {
    recording: Arc<Mutex<Recording>>,
    budget: Arc<AtomicUsize>,
}

impl Replay {
    pub(crate) fn new(source: Body, budget: Arc<AtomicUsize>) -> Replay {
        let recording = Recording {
            source,
            frames: Vec::new(),
            dropped: 0,
            bytes: 0,
            ended: false,
            overflowed: false,
            waiting: Vec::new(),
        };
        Replay { recording: Arc::new(Mutex::new(recording)), budget }
    }

    /// A body for one attempt, from the first frame.
    pub(crate) fn attempt(&self) -> ReplayBody {
        ReplayBody { recording: self.recording.clone(), budget: self.budget.clone(), next: 0 }
    }

    /// The request can still be sent again from its start.
    pub(crate) fn replayable(&self) -> bool {
        !self.recording.lock().unwrap_or_else(|e| e.into_inner()).overflowed
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        let bytes = self.recording.lock().unwrap_or_else(|e| e.into_inner()).bytes;
        self.budget.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// One attempt's view of a [`Replay`].
pub(crate) struct ReplayBody {
    recording: Arc<Mutex<Recording>>,
    budget: Arc<AtomicUsize>,
    next: usize,
}

impl http_body::Body for ReplayBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let mut r = this.recording.lock().unwrap_or_else(|e| e.into_inner());
        if this.next < r.dropped {
            return Poll::Ready(Some(Err(Status::aborted("the request outgrew the retry buffer"))));
        }
        if let Some(frame) = r.frames.get(this.next - r.dropped) {
            this.next += 1;
            let frame = match frame {
                Recorded::Data(data) => http_body::Frame::data(data.clone()),
                Recorded::Trailers(trailers) => http_body::Frame::trailers(trailers.clone()),
            };
            return Poll::Ready(Some(Ok(frame)));
        }
        if r.ended {
            return Poll::Ready(None);
        }
        let frame = match Pin::new(&mut r.source).poll_frame(cx) {
            Poll::Pending => {
                // The source keeps one waker: remember the others.
                if !r.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                    r.waiting.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Poll::Ready(None) => {
                r.ended = true;
                r.wake_waiting();
                return Poll::Ready(None);
            }
            Poll::Ready(Some(Err(e))) => {
                r.wake_waiting();
                return Poll::Ready(Some(Err(e)));
            }
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        r.wake_waiting();
        this.next += 1;
        if !r.overflowed {
            let size = frame.data_ref().map_or(0, Bytes::len);
            let total = this.budget.fetch_add(size, Ordering::Relaxed) + size;
            r.bytes += size;
            if r.bytes > REPLAY_PER_CALL || total > REPLAY_PER_CLIENT {
                // Committed: keep nothing more, give back what was kept.
                this.budget.fetch_sub(r.bytes, Ordering::Relaxed);
                r.bytes = 0;
                r.overflowed = true;
                r.dropped += r.frames.len() + 1;
                r.frames.clear();
            } else if let Some(data) = frame.data_ref() {
                r.frames.push(Recorded::Data(data.clone()));
            } else if let Some(trailers) = frame.trailers_ref() {
                r.frames.push(Recorded::Trailers(trailers.clone()));
            }
        } else {
            r.dropped += 1;
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        let r = self.recording.lock().unwrap_or_else(|e| e.into_inner());
        r.ended && self.next >= r.dropped + r.frames.len()
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[test]
    fn throttling_follows_grfc_a6() {
        // maxTokens 10, tokenRatio 0.5: from full, the fifth failure brings
        // the bucket to 5 = max/2 and stops retries.
        let t = Throttle::new(RetryThrottlingSpec { max_tokens: 10, token_ratio: 0.5 });
        for _ in 0..4 {
            assert!(t.failure());
        }
        assert!(!t.failure());
        assert!((t.tokens() - 5.0).abs() < 1e-9);
        t.success();
        assert!((t.tokens() - 5.5).abs() < 1e-9);
        for _ in 0..20 {
            t.success();
        }
        assert!((t.tokens() - 10.0).abs() < 1e-9, "capped at max_tokens");
    }

    fn body(chunks: &[&'static [u8]]) -> Body {
        let frames: Vec<Result<http_body::Frame<Bytes>, Status>> =
            chunks.iter().map(|c| Ok(http_body::Frame::data(Bytes::from_static(c)))).collect();
        Body::new(http_body_util::StreamBody::new(tokio_stream::iter(frames)))
    }

    async fn read(b: ReplayBody) -> Result<Vec<u8>, Status> {
        Ok(b.collect().await?.to_bytes().to_vec())
    }

    #[tokio::test]
    async fn attempts_replay_the_request() {
        let budget = Arc::new(AtomicUsize::new(0));
        let replay = Replay::new(body(&[b"ab", b"cd"]), budget.clone());
        assert_eq!(read(replay.attempt()).await.expect("first"), b"abcd");
        assert_eq!(read(replay.attempt()).await.expect("second"), b"abcd");
        assert!(replay.replayable());
        assert_eq!(budget.load(Ordering::Relaxed), 4);
        drop(replay);
        assert_eq!(budget.load(Ordering::Relaxed), 0, "the client's budget is given back");
    }

    #[tokio::test]
    async fn an_oversized_request_commits_its_call() {
        static BIG: [u8; REPLAY_PER_CALL + 1] = [7; REPLAY_PER_CALL + 1];
        let budget = Arc::new(AtomicUsize::new(0));
        let replay = Replay::new(body(&[b"x", &BIG]), budget.clone());
        assert_eq!(read(replay.attempt()).await.expect("first attempt is whole").len(), BIG.len() + 1);
        assert!(!replay.replayable());
        assert_eq!(budget.load(Ordering::Relaxed), 0);
        assert!(read(replay.attempt()).await.is_err(), "nothing left to replay");
    }
}
