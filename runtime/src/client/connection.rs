//! One HTTP/2 connection to one endpoint: dialling (TCP or a Unix socket,
//! optionally TLS), sending a call and reading its response, keepalive.
//!
//! The connection speaks HTTP/2 through `h2` directly, so the pool sees
//! what it needs to place calls: the server's current
//! `MAX_CONCURRENT_STREAMS`, the calls in flight, and whether the
//! connection still takes new streams.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use h2::Reason;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::Status;

use super::target::Address;

/// Streams assumed allowed before the server's SETTINGS arrive (the
/// HTTP/2 specification's recommended minimum).
const INITIAL_MAX_SEND_STREAMS: usize = 100;

/// How a connection is dialled and kept.
#[derive(Clone)]
pub(crate) struct Dial {
    /// The whole attempt, TCP and TLS handshakes included.
    pub(crate) connect_timeout: Duration,
    /// Ping interval and ack timeout while calls are open (gRFC A8).
    pub(crate) keepalive: Option<(Duration, Duration)>,
    /// TLS; `None` for plaintext (h2c with prior knowledge).
    pub(crate) tls: Option<super::tls::Connector>,
    /// Sent as `:scheme` and `:authority`.
    pub(crate) scheme: http::uri::Scheme,
    pub(crate) authority: http::uri::Authority,
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Response times of one endpoint's calls: a peak-sensitive moving
/// average (a slower call counts at once, faster ones pull it down
/// gradually), kept as `f64` nanoseconds.
#[derive(Default)]
pub(crate) struct Latency(AtomicU64);

impl Latency {
    /// Weight of a sample below the average.
    const DECAY: f64 = 0.2;

    pub(crate) fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    fn record(&self, sample: Duration) {
        let sample = sample.as_nanos() as f64;
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            let old = f64::from_bits(bits);
            let new = if sample >= old || old == 0.0 { sample } else { old + (sample - old) * Self::DECAY };
            Some(new.to_bits())
        });
    }
}

/// What an endpoint's calls tell about it: their response times, and the
/// attempts that succeeded and failed since outlier detection last looked.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) latency: Latency,
    pub(crate) succeeded: AtomicU64,
    pub(crate) failed: AtomicU64,
}

impl Stats {
    /// Counts an attempt's final status: OK is a success, CANCELLED (the
    /// caller gave up) is neither, anything else a failure.
    pub(crate) fn outcome(&self, code: u8) {
        match code {
            0 => self.succeeded.fetch_add(1, Ordering::Relaxed),
            1 => 0,
            _ => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// An open connection.
pub(crate) struct Connection {
    send: h2::client::SendRequest<Bytes>,
    /// The endpoint this connection goes to.
    pub(crate) address: Address,
    pub(crate) stats: Arc<Stats>,
    in_flight: AtomicUsize,
    /// No new streams: the connection ended, failed a ping, or the server
    /// sent GOAWAY.
    closed: AtomicBool,
}

/// Counts a call against its connection until dropped (with the
/// response body, when the call ends), and records how long it took.
/// Dropping it also ends the request stream, should it still be sending
/// (an abandoned hedge, or a call the server has finished).
pub(crate) struct InFlight {
    conn: Arc<Connection>,
    started: tokio::time::Instant,
    _sending: Option<tokio::sync::oneshot::Sender<()>>,
}

impl InFlight {
    /// Counts the attempt's final status for outlier detection.
    pub(crate) fn outcome(&self, code: u8) {
        self.conn.stats.outcome(code);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.conn.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.conn.stats.latency.record(self.started.elapsed());
    }
}

/// Why a call could not be sent on a connection.
pub(crate) enum SendError {
    /// The call never reached the server (the connection had closed, or the
    /// server refused the stream unprocessed): safe to send again
    /// elsewhere, whatever the method.
    Unprocessed(String),
    /// The call may have reached the server.
    Failed(Status),
}

impl Connection {
    /// Calls in flight.
    pub(crate) fn load(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The server's current limit on concurrent streams.
    pub(crate) fn max_streams(&self) -> usize {
        self.send.current_max_send_streams()
    }

    /// Open and taking new streams.
    pub(crate) fn is_open(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
    }

    /// Room for another stream without queueing behind the server's limit.
    pub(crate) fn has_room(&self) -> bool {
        self.load() < self.max_streams()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Sends `request` (its URI carries only the path) and waits for the
    /// response headers. The request body is sent by a task of its own, so
    /// streams flow both ways.
    pub(crate) async fn send<B>(
        self: &Arc<Self>,
        dial: &Dial,
        request: http::Request<B>,
    ) -> Result<(http::Response<h2::RecvStream>, InFlight), SendError>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        let mut guard = InFlight { conn: self.clone(), started: tokio::time::Instant::now(), _sending: None };
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        parts.uri = http::Uri::builder()
            .scheme(dial.scheme.clone())
            .authority(dial.authority.clone())
            .path_and_query(path)
            .build()
            .map_err(|e| SendError::Failed(Status::internal(format!("request URI: {e}"))))?;
        let head = http::Request::from_parts(parts, ());
        let mut send = self.send.clone();
        let ready = std::future::poll_fn(|cx| send.poll_ready(cx)).await;
        if let Err(e) = ready {
            self.close();
            return Err(SendError::Unprocessed(format!("connection closed: {e}")));
        }
        let end = body.is_end_stream();
        let (response, stream) = match send.send_request(head, end) {
            Ok(pair) => pair,
            Err(e) => {
                self.close();
                return Err(SendError::Unprocessed(format!("connection closed: {e}")));
            }
        };
        if !end {
            let (sending, abandoned) = tokio::sync::oneshot::channel();
            guard._sending = Some(sending);
            tokio::spawn(pump(body, stream, abandoned));
        }
        match response.await {
            Ok(response) => Ok((response, guard)),
            Err(e) => {
                if e.is_go_away() || e.is_io() {
                    self.close();
                }
                // A stream the server refused, or one above the last it
                // will process after GOAWAY, was not processed.
                let unprocessed = e.reason() == Some(Reason::REFUSED_STREAM)
                    || (e.is_go_away() && e.reason() == Some(Reason::NO_ERROR));
                if unprocessed {
                    Err(SendError::Unprocessed(e.to_string()))
                } else {
                    Err(SendError::Failed(status_of(&e)))
                }
            }
        }
    }
}

/// The status of a call that failed at the transport: DEADLINE_EXCEEDED
/// once its deadline has passed (a server resets a stream whose deadline
/// it saw pass, as grpc-go's does), else `status`.
pub(crate) fn past_deadline(deadline: Option<tokio::time::Instant>, status: Status) -> Status {
    match deadline {
        Some(at) if at <= tokio::time::Instant::now() => {
            Status::deadline_exceeded(format!("deadline exceeded ({})", status.message()))
        }
        _ => status,
    }
}

/// The status a call gets for a transport error.
pub(crate) fn status_of(e: &h2::Error) -> Status {
    match e.reason() {
        Some(Reason::CANCEL) => Status::cancelled(format!("stream cancelled: {e}")),
        Some(Reason::ENHANCE_YOUR_CALM) => Status::resource_exhausted(format!("server is overloaded: {e}")),
        Some(Reason::INADEQUATE_SECURITY) => Status::permission_denied(format!("insecure transport: {e}")),
        Some(Reason::NO_ERROR | Reason::REFUSED_STREAM) | None => Status::unavailable(format!("connection: {e}")),
        Some(_) => Status::internal(format!("HTTP/2: {e}")),
    }
}

/// Copies a request body into its stream, as fast as the stream's flow
/// control allows, until the body ends or the attempt is `abandoned`.
async fn pump<B>(body: B, mut stream: h2::SendStream<Bytes>, mut abandoned: tokio::sync::oneshot::Receiver<()>)
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
{
    let mut body = std::pin::pin!(body);
    loop {
        let next = tokio::select! {
            next = std::future::poll_fn(|cx| body.as_mut().poll_frame(cx)) => next.map(|r| r.map_err(drop)),
            _ = &mut abandoned => {
                stream.send_reset(Reason::CANCEL);
                return;
            }
        };
        let frame = match next {
            None => {
                let _ = stream.send_data(Bytes::new(), true);
                return;
            }
            Some(Ok(frame)) => frame,
            Some(Err(_)) => {
                stream.send_reset(Reason::CANCEL);
                return;
            }
        };
        match frame.into_data() {
            Ok(mut data) => {
                while !data.is_empty() {
                    stream.reserve_capacity(data.len());
                    let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                        Some(Ok(n)) => n,
                        // Reset by the server, or the connection ended.
                        Some(Err(_)) | None => return,
                    };
                    if granted == 0 {
                        continue;
                    }
                    let chunk = data.split_to(granted.min(data.len()));
                    if stream.send_data(chunk, false).is_err() {
                        return;
                    }
                }
            }
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    let _ = stream.send_trailers(trailers);
                    return;
                }
            }
        }
    }
}

/// Dials `address` and performs the HTTP/2 handshake, within the
/// connect timeout. The returned task ends when the connection does.
pub(crate) async fn connect(
    address: &Address,
    dial: &Dial,
    stats: Arc<Stats>,
) -> Result<(Arc<Connection>, tokio::task::JoinHandle<()>), String> {
    let attempt = async {
        let io: Box<dyn Io> = match address {
            Address::Tcp(addr) => {
                let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("cannot connect: {e}"))?;
                let _ = tcp.set_nodelay(true);
                match &dial.tls {
                    Some(tls) => tls.handshake(tcp).await?,
                    None => Box::new(tcp),
                }
            }
            #[cfg(unix)]
            Address::Unix(path) => {
                let unix = tokio::net::UnixStream::connect(path).await.map_err(|e| format!("cannot connect: {e}"))?;
                match &dial.tls {
                    Some(tls) => tls.handshake(unix).await?,
                    None => Box::new(unix),
                }
            }
            #[cfg(not(unix))]
            Address::Unix(_) => return Err("Unix domain sockets need a Unix system".to_owned()),
        };
        let (send, connection) = h2::client::Builder::new()
            .initial_max_send_streams(INITIAL_MAX_SEND_STREAMS)
            .initial_window_size(1 << 20)
            .initial_connection_window_size(2 << 20)
            .max_frame_size(16 * 1024)
            .enable_push(false)
            .handshake::<_, Bytes>(io)
            .await
            .map_err(|e| format!("HTTP/2 handshake failed: {e}"))?;
        Ok::<_, String>((send, connection))
    };
    let within = dial.connect_timeout;
    let deadline = tokio::time::Instant::now() + within;
    let timed_out = || format!("no connection within the connect timeout of {within:?}");
    let (send, mut connection) = match tokio::time::timeout_at(deadline, attempt).await {
        Ok(result) => result?,
        Err(_) => return Err(timed_out()),
    };
    let conn = Arc::new(Connection {
        send,
        address: address.clone(),
        stats,
        in_flight: AtomicUsize::new(0),
        closed: AtomicBool::new(false),
    });
    let ping = connection.ping_pong();
    let keepalive = dial.keepalive;
    // The task holds the connection weakly: once the pool and the calls
    // let go of it, h2 closes it gracefully.
    let kept = Arc::downgrade(&conn);
    let (answered, answer) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let pinger = async {
            let Some(mut ping) = ping else {
                let _ = answered.send(());
                return std::future::pending::<()>().await;
            };
            // The handshake is only written; a first ping's answer shows a
            // live HTTP/2 server (and that the connection's task runs).
            if ping.ping(h2::Ping::opaque()).await.is_err() {
                return;
            }
            let _ = answered.send(());
            let Some((interval, timeout)) = keepalive else { return std::future::pending::<()>().await };
            loop {
                tokio::time::sleep(interval).await;
                // Servers refuse pings on idle connections by default.
                match kept.upgrade() {
                    None => return,
                    Some(c) if c.load() == 0 => continue,
                    Some(_) => {}
                }
                match tokio::time::timeout(timeout, ping.ping(h2::Ping::opaque())).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => return,
                }
            }
        };
        tokio::select! {
            _ = &mut connection => {}
            () = pinger => {}
        }
        if let Some(c) = kept.upgrade() {
            c.close();
        }
    });
    match tokio::time::timeout_at(deadline, answer).await {
        Ok(Ok(())) => Ok((conn, task)),
        Ok(Err(_)) => {
            task.abort();
            Err("the server closed the connection during the HTTP/2 handshake".to_owned())
        }
        Err(_) => {
            task.abort();
            Err(timed_out())
        }
    }
}

/// A response body read from its HTTP/2 stream, releasing flow-control
/// capacity as data is read, and telling `on_end` the call's final status.
/// The call's deadline holds to its last byte: when it passes first, the
/// stream is reset and the caller gets DEADLINE_EXCEEDED.
pub struct ResponseBody {
    recv: Option<h2::RecvStream>,
    data_done: bool,
    end: Option<super::call::Finish>,
    _in_flight: Option<InFlight>,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl ResponseBody {
    pub(crate) fn streaming(
        recv: h2::RecvStream,
        end: super::call::Finish,
        in_flight: InFlight,
        deadline: Option<tokio::time::Instant>,
    ) -> ResponseBody {
        ResponseBody {
            recv: Some(recv),
            data_done: false,
            end: Some(end),
            _in_flight: Some(in_flight),
            deadline: deadline.map(|at| Box::pin(tokio::time::sleep_until(at))),
        }
    }

    /// A body with nothing to read (trailers-only responses).
    pub(crate) fn empty() -> ResponseBody {
        ResponseBody { recv: None, data_done: true, end: None, _in_flight: None, deadline: None }
    }

    /// The status of a transport error while reading (see [`past_deadline`]).
    fn transport_status(&self, e: &h2::Error) -> Status {
        past_deadline(self.deadline.as_ref().map(|sleep| sleep.deadline()), status_of(e))
    }

    /// Waiting on the stream: fails the call if its deadline has come.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        match self.deadline.as_mut().map(|sleep| sleep.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => {
                self.fail(Status::deadline_exceeded("deadline exceeded while reading the response"))
            }
            _ => Poll::Pending,
        }
    }

    /// Ends the call with `status`: the stream is reset (the attempt is
    /// dropped) and the status recorded.
    fn fail(&mut self, status: Status) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        self.finish(status.code() as u8, status.message());
        self.recv = None;
        self._in_flight = None;
        Poll::Ready(Some(Err(status)))
    }

    fn finish(&mut self, code: u8, message: &str) {
        if let Some(end) = self.end.take() {
            end.finish(code, message);
            if let Some(attempt) = &self._in_flight {
                attempt.outcome(code);
            }
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // Dropped before its trailers: the caller gave up on the call.
        self.finish(1, "the caller dropped the response before it ended");
    }
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
        let this = &mut *self;
        let Some(recv) = this.recv.as_mut() else { return Poll::Ready(None) };
        if !this.data_done {
            match recv.poll_data(cx) {
                Poll::Pending => return this.poll_deadline(cx),
                Poll::Ready(Some(Ok(data))) => {
                    let _ = recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(http_body::Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => {
                    let status = this.transport_status(&e);
                    return this.fail(status);
                }
                Poll::Ready(None) => this.data_done = true,
            }
        }
        let Some(recv) = this.recv.as_mut() else { return Poll::Ready(None) };
        match recv.poll_trailers(cx) {
            Poll::Pending => this.poll_deadline(cx),
            Poll::Ready(Ok(Some(trailers))) => {
                let code = crate::completion::status_of(&trailers).unwrap_or(2);
                if code == 0 {
                    this.finish(code, "");
                } else {
                    let status = Status::from_header_map(&trailers);
                    this.finish(code, status.as_ref().map_or("", |s| s.message()));
                }
                this.recv = None;
                Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))))
            }
            Poll::Ready(Ok(None)) => {
                // A response without trailers is missing its status.
                this.finish(13, "the response ended without trailers (no grpc-status)");
                this.recv = None;
                Poll::Ready(None)
            }
            Poll::Ready(Err(e)) => {
                let status = this.transport_status(&e);
                this.fail(status)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_none()
    }
}
