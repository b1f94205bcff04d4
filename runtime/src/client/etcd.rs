//! etcd's v3 API, as much as service discovery needs: leases (grant,
//! keep alive, revoke), puts and deletes under a lease, prefix reads and
//! watches. Spoken over gRPC through our own [`Channel`], so etcd calls get
//! the pool, the connection backoff and the client metrics
//! (`grpc_client_*{grpc_service="etcdserverpb.KV"}`) of any other client.
//!
//! Registrations follow etcd's own naming convention (its Go
//! `client/v3/naming/endpoints` package): the key `<service>/<address>`
//! holds `{"Addr":"<address>"}`, so resolvers built on it (grpc-go's etcd
//! resolver) find servers registered here, and ours finds theirs.

use std::time::Duration;

use tonic::Status;
use tonic::codegen::http::uri::PathAndQuery;

use super::{Builder, Channel};
use crate::codegen::{ClientSpec, FileDescriptors, LoadBalancing, MethodKind, MethodSpec, ServerSpec, ServiceSpec};

/// The environment variable naming the etcd cluster.
pub const ENDPOINTS_VARIABLE: &str = "SVC_ETCD_ENDPOINTS";

/// Deadline of one unary etcd call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

const fn method(service_method: &'static str, name: &'static str, kind: MethodKind) -> MethodSpec {
    MethodSpec {
        name,
        path: service_method,
        kind,
        idempotent: false,
        timeout: None,
        retry: None,
        hedging: None,
        requires_auth: false,
        roles: &[],
        rate_limit: None,
        audit: false,
        validate: false,
        http: &[],
    }
}

const RANGE: &str = "/etcdserverpb.KV/Range";
const PUT: &str = "/etcdserverpb.KV/Put";
const DELETE_RANGE: &str = "/etcdserverpb.KV/DeleteRange";
const LEASE_GRANT: &str = "/etcdserverpb.Lease/LeaseGrant";
const LEASE_REVOKE: &str = "/etcdserverpb.Lease/LeaseRevoke";
const LEASE_KEEP_ALIVE: &str = "/etcdserverpb.Lease/LeaseKeepAlive";
const WATCH: &str = "/etcdserverpb.Watch/Watch";

/// The etcd API as a client spec: its methods (for metrics) and client
/// defaults; the server half is never served.
static ETCD: ServiceSpec = ServiceSpec {
    name: "etcdserverpb",
    port: 2379,
    metrics_port: 0,
    http_port: 8080,
    server: ServerSpec {
        max_recv_message_size: 4 << 20,
        max_send_message_size: 4 << 20,
        max_concurrent_streams: 100,
        concurrency_limit: 100,
        keepalive_interval: Duration::from_secs(7200),
        keepalive_timeout: Duration::from_secs(20),
        min_ping_interval: Duration::from_secs(300),
        max_connection_idle: None,
        max_connection_age: None,
        max_connection_age_grace: None,
        shutdown_grace: Duration::from_secs(1),
    },
    auth: None,
    client: ClientSpec {
        pool_size: 1,
        load_balancing: LoadBalancing::PickFirst,
        connect_timeout: Duration::from_secs(5),
        keepalive: None,
        compression: "",
        retry_throttling: None,
        outlier_detection: None,
    },
    methods: &[
        method(RANGE, "Range", MethodKind::Unary),
        method(PUT, "Put", MethodKind::Unary),
        method(DELETE_RANGE, "DeleteRange", MethodKind::Unary),
        method(LEASE_GRANT, "LeaseGrant", MethodKind::Unary),
        method(LEASE_REVOKE, "LeaseRevoke", MethodKind::Unary),
        method(LEASE_KEEP_ALIVE, "LeaseKeepAlive", MethodKind::Streaming),
        method(WATCH, "Watch", MethodKind::Streaming),
    ],
    descriptors: &FileDescriptors { files: &[], imports: &[] },
    openapi: None,
};

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct ResponseHeader {
    #[prost(int64, tag = "3")]
    pub(crate) revision: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct KeyValue {
    #[prost(bytes = "vec", tag = "1")]
    pub(crate) key: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    pub(crate) value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    range_end: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RangeResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(message, repeated, tag = "2")]
    kvs: Vec<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PutRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
    #[prost(int64, tag = "3")]
    lease: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct PutResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DeleteRangeRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    range_end: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DeleteRangeResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    deleted: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LeaseGrantRequest {
    #[prost(int64, tag = "1")]
    ttl: i64,
    #[prost(int64, tag = "2")]
    id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LeaseGrantResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    id: i64,
    #[prost(int64, tag = "3")]
    ttl: i64,
    #[prost(string, tag = "4")]
    error: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LeaseRevokeRequest {
    #[prost(int64, tag = "1")]
    id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LeaseRevokeResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct LeaseKeepAliveRequest {
    #[prost(int64, tag = "1")]
    id: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct LeaseKeepAliveResponse {
    #[prost(message, optional, tag = "1")]
    header: Option<ResponseHeader>,
    #[prost(int64, tag = "2")]
    id: i64,
    #[prost(int64, tag = "3")]
    pub(crate) ttl: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WatchCreateRequest {
    #[prost(bytes = "vec", tag = "1")]
    key: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    range_end: Vec<u8>,
    #[prost(int64, tag = "3")]
    start_revision: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WatchRequest {
    #[prost(message, optional, tag = "1")]
    create_request: Option<WatchCreateRequest>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct Event {
    /// 0 PUT, 1 DELETE.
    #[prost(int32, tag = "1")]
    pub(crate) kind: i32,
    #[prost(message, optional, tag = "2")]
    pub(crate) kv: Option<KeyValue>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub(crate) struct WatchResponse {
    #[prost(message, optional, tag = "1")]
    pub(crate) header: Option<ResponseHeader>,
    #[prost(bool, tag = "3")]
    pub(crate) created: bool,
    #[prost(bool, tag = "4")]
    pub(crate) canceled: bool,
    #[prost(int64, tag = "5")]
    pub(crate) compact_revision: i64,
    #[prost(string, tag = "6")]
    pub(crate) cancel_reason: String,
    #[prost(message, repeated, tag = "11")]
    pub(crate) events: Vec<Event>,
}

/// The end of the key range holding every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte 0xff: to the end of the keyspace.
    vec![0]
}

/// The gRPC target of `SVC_ETCD_ENDPOINTS`-style text: comma-separated
/// `http://host:port` URLs (the scheme may be left out).
pub(crate) fn target_of(endpoints: &str) -> Result<String, String> {
    let mut hosts = Vec::new();
    for url in endpoints.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some(("https", _)) => {
                return Err(format!("{url}: TLS to etcd is not supported yet; use an http:// endpoint"));
            }
            Some((scheme, _)) => return Err(format!("{url}: unknown scheme {scheme:?}; write http://host:port")),
            None => url,
        };
        let host = rest.trim_end_matches('/');
        if host.contains('/') || !host.contains(':') {
            return Err(format!("{url}: write http://host:port, e.g. http://etcd:2379"));
        }
        hosts.push(host.to_owned());
    }
    match hosts.as_slice() {
        [] => Err("no endpoint given; write e.g. http://etcd-0.etcd:2379,http://etcd-1.etcd:2379".to_owned()),
        [one] => Ok(one.clone()),
        many if many.iter().all(|h| h.parse::<std::net::SocketAddr>().is_ok()) => {
            let v6 = many.iter().any(|h| h.starts_with('['));
            Ok(format!("{}:{}", if v6 { "ipv6" } else { "ipv4" }, many.join(",")))
        }
        _ => Err("several endpoints must be IP addresses (or give one DNS name that resolves to them all)".to_owned()),
    }
}

/// A connection to an etcd cluster.
#[derive(Clone)]
pub(crate) struct Etcd {
    grpc: tonic::client::Grpc<Channel>,
}

fn codec<T: prost::Message + Send + 'static, U: prost::Message + Default + Send + 'static>()
-> tonic_prost::ProstCodec<T, U> {
    tonic_prost::ProstCodec::default()
}

impl Etcd {
    /// A client of the cluster at `endpoints` (`SVC_ETCD_ENDPOINTS`'s
    /// form); connects on first use.
    pub(crate) async fn connect(endpoints: &str) -> Result<Etcd, String> {
        let target = target_of(endpoints)?;
        let channel: Channel = Builder::new(&ETCD, target).lazy().build().await.map_err(|e| e.to_string())?;
        Ok(Etcd { grpc: tonic::client::Grpc::new(channel) })
    }

    async fn unary<T, U>(&self, path: &'static str, message: T) -> Result<U, Status>
    where
        T: prost::Message + Send + Sync + 'static,
        U: prost::Message + Default + Send + Sync + 'static,
    {
        let mut grpc = self.grpc.clone();
        grpc.ready().await.map_err(|e| Status::unavailable(format!("etcd: {e}")))?;
        let mut request = tonic::Request::new(message);
        request.set_timeout(CALL_TIMEOUT);
        let reply = grpc.unary(request, PathAndQuery::from_static(path), codec::<T, U>()).await?;
        Ok(reply.into_inner())
    }

    /// A lease of `ttl`; returns its id and the TTL granted.
    pub(crate) async fn grant(&self, ttl: Duration) -> Result<(i64, i64), Status> {
        let reply: LeaseGrantResponse =
            self.unary(LEASE_GRANT, LeaseGrantRequest { ttl: ttl.as_secs().max(1) as i64, id: 0 }).await?;
        if !reply.error.is_empty() {
            return Err(Status::unavailable(format!("etcd refused a lease: {}", reply.error)));
        }
        Ok((reply.id, reply.ttl))
    }

    /// Ends a lease, deleting the keys attached to it.
    pub(crate) async fn revoke(&self, lease: i64) -> Result<(), Status> {
        let _: LeaseRevokeResponse = self.unary(LEASE_REVOKE, LeaseRevokeRequest { id: lease }).await?;
        Ok(())
    }

    pub(crate) async fn put(&self, key: &str, value: &str, lease: i64) -> Result<(), Status> {
        let request = PutRequest { key: key.as_bytes().to_vec(), value: value.as_bytes().to_vec(), lease };
        let _: PutResponse = self.unary(PUT, request).await?;
        Ok(())
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<(), Status> {
        let request = DeleteRangeRequest { key: key.as_bytes().to_vec(), range_end: Vec::new() };
        let _: DeleteRangeResponse = self.unary(DELETE_RANGE, request).await?;
        Ok(())
    }

    /// Every key under `prefix` with its value, and the store's revision.
    pub(crate) async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, i64), Status> {
        let key = prefix.as_bytes().to_vec();
        let request = RangeRequest { range_end: prefix_end(&key), key };
        let reply: RangeResponse = self.unary(RANGE, request).await?;
        Ok((reply.kvs, reply.header.map_or(0, |h| h.revision)))
    }

    /// Keeps `lease` alive, sending a keepalive every `every`; returns the
    /// stream of answers (a TTL of 0 or less: the lease is gone).
    pub(crate) async fn keep_alive(
        &self,
        lease: i64,
        every: Duration,
    ) -> Result<tonic::Streaming<LeaseKeepAliveResponse>, Status> {
        let requests = async_stream_of(move |tx| async move {
            loop {
                if tx.send(LeaseKeepAliveRequest { id: lease }).await.is_err() {
                    return;
                }
                tokio::time::sleep(every).await;
            }
        });
        let mut grpc = self.grpc.clone();
        grpc.ready().await.map_err(|e| Status::unavailable(format!("etcd: {e}")))?;
        let path = PathAndQuery::from_static(LEASE_KEEP_ALIVE);
        let reply = grpc.streaming(tonic::Request::new(requests), path, codec()).await?;
        Ok(reply.into_inner())
    }

    /// Watches every key under `prefix` from `revision` on.
    pub(crate) async fn watch(&self, prefix: &str, revision: i64) -> Result<tonic::Streaming<WatchResponse>, Status> {
        let key = prefix.as_bytes().to_vec();
        let create = WatchRequest {
            create_request: Some(WatchCreateRequest { range_end: prefix_end(&key), key, start_revision: revision }),
        };
        // The request side stays open: closing it would end the watch.
        let requests = async_stream_of(move |tx| async move {
            if tx.send(create).await.is_ok() {
                tx.closed().await;
            }
        });
        let mut grpc = self.grpc.clone();
        grpc.ready().await.map_err(|e| Status::unavailable(format!("etcd: {e}")))?;
        let reply = grpc.streaming(tonic::Request::new(requests), PathAndQuery::from_static(WATCH), codec()).await?;
        Ok(reply.into_inner())
    }
}

/// A stream of the messages `producer` sends; the producer runs as its own
/// task and stops when the stream is dropped.
fn async_stream_of<T, F, Fut>(producer: F) -> impl tokio_stream::Stream<Item = T> + Send + 'static
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let task = tokio::spawn(producer(tx));
    let abort = task.abort_handle();
    let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
    AbortOnDrop { stream, abort }
}

pin_project_lite::pin_project! {
    struct AbortOnDrop<S> {
        #[pin]
        stream: S,
        abort: tokio::task::AbortHandle,
    }

    impl<S> PinnedDrop for AbortOnDrop<S> {
        fn drop(this: Pin<&mut Self>) {
            this.abort.abort();
        }
    }
}

impl<S: tokio_stream::Stream> tokio_stream::Stream for AbortOnDrop<S> {
    type Item = S::Item;

    fn poll_next(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<S::Item>> {
        self.project().stream.poll_next(cx)
    }
}

/// The value a registration holds for `address` (etcd's naming format).
pub(crate) fn registration_value(address: &str) -> String {
    let mut out = String::from("{\"Addr\":");
    crate::log::json_string(&mut out, address);
    out.push('}');
    out
}

/// The address a registration's key and value name: the value's `Addr`
/// (etcd's naming format), else the text after the service prefix.
pub(crate) fn registered_address(prefix: &str, kv: &KeyValue) -> Option<String> {
    if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice::<serde_json::Value>(&kv.value)
        && let Some(serde_json::Value::String(addr)) = fields.get("Addr")
    {
        return Some(addr.clone());
    }
    let key = std::str::from_utf8(&kv.key).ok()?;
    key.strip_prefix(prefix).filter(|a| !a.is_empty()).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges() {
        assert_eq!(prefix_end(b"greeter.v1.Greeter/"), b"greeter.v1.Greeter0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), [0]);
    }

    #[test]
    fn endpoints_become_targets() {
        assert_eq!(target_of("http://127.0.0.1:2379").unwrap(), "127.0.0.1:2379");
        assert_eq!(
            target_of("http://10.0.0.1:2379, http://10.0.0.2:2379/").unwrap(),
            "ipv4:10.0.0.1:2379,10.0.0.2:2379"
        );
        assert_eq!(target_of("etcd.default.svc:2379").unwrap(), "etcd.default.svc:2379");
        assert!(target_of("").unwrap_err().contains("no endpoint"));
        assert!(target_of("https://etcd:2379").unwrap_err().contains("TLS"));
        assert!(target_of("ftp://etcd:2379").unwrap_err().contains("unknown scheme"));
        assert!(target_of("http://etcd").unwrap_err().contains("host:port"));
        assert!(target_of("http://a:1,http://b:2").unwrap_err().contains("IP addresses"));
    }

    #[test]
    fn registrations_use_etcds_naming_format() {
        assert_eq!(registration_value("10.0.0.1:50051"), r#"{"Addr":"10.0.0.1:50051"}"#);
        let kv = |k: &str, v: &str| KeyValue { key: k.into(), value: v.into() };
        let prefix = "greeter.v1.Greeter/";
        assert_eq!(
            registered_address(prefix, &kv("greeter.v1.Greeter/x", r#"{"Addr":"10.0.0.1:1","Metadata":null}"#)),
            Some("10.0.0.1:1".into())
        );
        assert_eq!(registered_address(prefix, &kv("greeter.v1.Greeter/10.0.0.2:2", "")), Some("10.0.0.2:2".into()));
        assert_eq!(registered_address(prefix, &kv("greeter.v1.Greeter/", "junk")), None);
    }
}
