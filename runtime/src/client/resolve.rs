//! Name resolution: where a target's endpoints are, kept current while the
//! client lives.
//!
//! A [`Resolver`] publishes the target's addresses through [`Updates`]
//! whenever they change; the pool connects to new addresses and drains
//! removed ones. Built in: fixed lists, DNS (re-resolved on an interval
//! and whenever a connection fails), and etcd (watched). Other registries
//! (Consul, Nacos, Kubernetes EndpointSlices) implement the trait:
//!
//! ```
//! use std::time::Duration;
//! use svc_runtime::client::{Address, Resolver, Updates};
//!
//! /// Addresses from a file, one `host:port` per line, re-read every 10 s.
//! struct FromFile(std::path::PathBuf);
//!
//! impl Resolver for FromFile {
//!     fn run(self: Box<Self>, updates: Updates) -> svc_runtime::client::BoxFuture<()> {
//!         Box::pin(async move {
//!             loop {
//!                 let addresses = std::fs::read_to_string(&self.0)
//!                     .map_err(|e| format!("{}: {e}", self.0.display()))
//!                     .and_then(|text| {
//!                         text.lines()
//!                             .filter(|l| !l.trim().is_empty())
//!                             .map(|l| l.trim().parse().map(Address::Tcp).map_err(|e| format!("{l:?}: {e}")))
//!                             .collect()
//!                     });
//!                 if !updates.publish(addresses) {
//!                     return; // the client is gone
//!                 }
//!                 updates.wait(Duration::from_secs(10)).await;
//!             }
//!         })
//!     }
//! }
//! ```
//!
//! and are given to [`crate::client::Builder::resolver`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::target::{Address, Target};

/// A boxed, sendable future.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// A source of a target's endpoint addresses.
pub trait Resolver: Send + 'static {
    /// Runs while the client lives: publishes the addresses (or why there
    /// are none) through `updates` whenever they change, and resolves
    /// again early when [`Updates::wait`] returns because a connection
    /// failed. Returns once [`Updates::publish`] reports the client gone.
    fn run(self: Box<Self>, updates: Updates) -> BoxFuture<()>;
}

/// The resolved state: addresses, or why there are none.
pub(crate) type Resolution = Option<Result<Vec<Address>, String>>;

/// A resolver's side of the link to the pool.
pub struct Updates {
    tx: watch::Sender<Resolution>,
    again: Arc<Notify>,
}

impl Updates {
    pub(crate) fn new(tx: watch::Sender<Resolution>, again: Arc<Notify>) -> Updates {
        Updates { tx, again }
    }

    /// Publishes the current addresses, or why they cannot be had (an
    /// error keeps the endpoints already known, as gRPC does). False once
    /// the client is gone.
    pub fn publish(&self, addresses: Result<Vec<Address>, String>) -> bool {
        let mut addresses = addresses;
        if let Ok(list) = &mut addresses {
            // Order matters (pick_first); repeats do not.
            let mut seen = std::collections::HashSet::new();
            list.retain(|a| seen.insert(a.clone()));
        }
        self.tx.send_if_modified(|current| {
            if current.as_ref() == Some(&addresses) {
                return false;
            }
            *current = Some(addresses);
            true
        });
        !self.tx.is_closed()
    }

    /// Waits `interval`, or less when the pool asks to resolve again (a
    /// connection failed).
    pub async fn wait(&self, interval: Duration) {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = self.again.notified() => {}
        }
    }
}

/// Fixed addresses.
pub(crate) struct Static(pub(crate) Vec<Address>);

impl Resolver for Static {
    fn run(self: Box<Self>, updates: Updates) -> BoxFuture<()> {
        Box::pin(async move {
            updates.publish(Ok(self.0));
            // Nothing changes; stay until the client is gone.
            updates.tx.closed().await;
        })
    }
}

/// Shortest wait between two resolutions, so failing connections cannot
/// flood the DNS server.
const MIN_RESOLVE_GAP: Duration = Duration::from_secs(1);

/// DNS: A and AAAA records of a host, re-resolved every `refresh` and when
/// a connection fails.
pub(crate) struct Dns {
    pub(crate) server: Option<std::net::SocketAddr>,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) refresh: Duration,
}

impl Resolver for Dns {
    fn run(self: Box<Self>, updates: Updates) -> BoxFuture<()> {
        Box::pin(async move {
            let lookup = match super::dns::Lookup::new(self.server) {
                Ok(lookup) => lookup,
                Err(problem) => {
                    updates.publish(Err(problem));
                    return updates.tx.closed().await;
                }
            };
            loop {
                let addresses = lookup
                    .ips(&self.host)
                    .await
                    .map(|ips| ips.into_iter().map(|ip| Address::Tcp((ip, self.port).into())).collect::<Vec<_>>())
                    .and_then(|list| {
                        if list.is_empty() { Err(format!("{} has no A or AAAA records", self.host)) } else { Ok(list) }
                    });
                if !updates.publish(addresses) {
                    return;
                }
                tokio::time::sleep(MIN_RESOLVE_GAP).await;
                tokio::select! {
                    () = updates.wait(self.refresh.saturating_sub(MIN_RESOLVE_GAP)) => {}
                    () = updates.tx.closed() => return,
                }
            }
        })
    }
}

/// The resolver a target names.
pub(crate) fn for_target(target: &Target, refresh: Duration) -> Result<Box<dyn Resolver>, String> {
    Ok(match target {
        Target::Static(addresses) => Box::new(Static(addresses.clone())),
        Target::Dns { server, host, port } => {
            Box::new(Dns { server: *server, host: host.clone(), port: *port, refresh })
        }
        Target::Etcd { service } => {
            let endpoints = std::env::var(super::etcd::ENDPOINTS_VARIABLE).unwrap_or_default();
            if endpoints.trim().is_empty() {
                return Err(format!(
                    "etcd:///{service} needs {} (comma-separated http://host:port URLs of the etcd cluster)",
                    super::etcd::ENDPOINTS_VARIABLE
                ));
            }
            super::etcd::target_of(&endpoints).map_err(|p| format!("{}: {p}", super::etcd::ENDPOINTS_VARIABLE))?;
            Box::new(Etcd { endpoints, service: service.clone() })
        }
    })
}

/// etcd: the servers registered under `<service>/` (etcd's naming
/// format), listed once and then watched, listed again whenever the watch
/// breaks.
pub(crate) struct Etcd {
    pub(crate) endpoints: String,
    pub(crate) service: String,
}

impl Etcd {
    /// Lists, then follows the watch until it breaks; `Ok` when the client
    /// is gone.
    async fn follow(&self, etcd: &super::etcd::Etcd, prefix: &str, updates: &Updates) -> Result<(), String> {
        let failed = |s: tonic::Status| format!("etcd at {}: {}", self.endpoints, s.message());
        let (kvs, revision) = etcd.list(prefix).await.map_err(failed)?;
        let mut registered: std::collections::BTreeMap<Vec<u8>, String> = kvs
            .iter()
            .filter_map(|kv| super::etcd::registered_address(prefix, kv).map(|a| (kv.key.clone(), a)))
            .collect();
        let mut watch = etcd.watch(prefix, revision + 1).await.map_err(failed)?;
        loop {
            if !updates.publish(addresses(&self.service, &registered).await) {
                return Ok(());
            }
            let Some(response) = watch.message().await.map_err(failed)? else {
                return Err(format!("etcd at {} ended the watch", self.endpoints));
            };
            if response.canceled || response.compact_revision > 0 {
                return Err(format!("etcd at {} cancelled the watch: {}", self.endpoints, response.cancel_reason));
            }
            for event in response.events {
                let Some(kv) = event.kv else { continue };
                if event.kind == 1 {
                    registered.remove(&kv.key);
                } else if let Some(address) = super::etcd::registered_address(prefix, &kv) {
                    registered.insert(kv.key.clone(), address);
                }
            }
        }
    }
}

/// The registered addresses as endpoints (host names looked up).
async fn addresses(
    service: &str,
    registered: &std::collections::BTreeMap<Vec<u8>, String>,
) -> Result<Vec<Address>, String> {
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for text in registered.values() {
        match text.parse::<std::net::SocketAddr>() {
            Ok(addr) => out.push(Address::Tcp(addr)),
            Err(_) => match tokio::net::lookup_host(text.as_str()).await {
                Ok(found) => out.extend(found.map(Address::Tcp)),
                Err(e) => problems.push(format!("{text}: {e}")),
            },
        }
    }
    match (out.is_empty(), problems.is_empty()) {
        (false, _) => Ok(out),
        (true, true) => Err(format!("no server of {service} is registered in etcd")),
        (true, false) => {
            Err(format!("the servers {service} registered in etcd cannot be resolved: {}", problems.join("; ")))
        }
    }
}

impl Resolver for Etcd {
    fn run(self: Box<Self>, updates: Updates) -> BoxFuture<()> {
        Box::pin(async move {
            let etcd = match super::etcd::Etcd::connect(&self.endpoints).await {
                Ok(etcd) => etcd,
                Err(problem) => {
                    updates.publish(Err(problem));
                    return updates.tx.closed().await;
                }
            };
            let prefix = format!("{}/", self.service);
            let mut backoff = super::backoff::ConnectBackoff::new();
            loop {
                match self.follow(&etcd, &prefix, &updates).await {
                    Ok(()) => return,
                    Err(problem) => {
                        if !updates.publish(Err(problem)) {
                            return;
                        }
                    }
                }
                tokio::select! {
                    () = tokio::time::sleep(backoff.next_wait().min(Duration::from_secs(10))) => {}
                    () = updates.tx.closed() => return,
                }
            }
        })
    }
}
