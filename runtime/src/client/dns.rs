//! DNS lookups: the system's resolver (`getaddrinfo`: `/etc/hosts`,
//! `/etc/resolv.conf` and its search domains, as Kubernetes pods expect),
//! or a named DNS server asked directly through hickory-resolver with no
//! cache, so that each resolution sees the records as they are.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};

/// How names are looked up.
pub(crate) enum Lookup {
    System,
    Server(Box<TokioResolver>),
}

impl Lookup {
    pub(crate) fn new(server: Option<SocketAddr>) -> Result<Lookup, String> {
        let Some(addr) = server else { return Ok(Lookup::System) };
        let mut udp = ConnectionConfig::udp();
        udp.port = addr.port();
        let mut tcp = ConnectionConfig::tcp();
        tcp.port = addr.port();
        let config = ResolverConfig::from_name_servers(vec![NameServerConfig::new(addr.ip(), true, vec![udp, tcp])]);
        let mut opts = ResolverOpts::default();
        opts.cache_size = 0;
        opts.positive_max_ttl = Some(Duration::ZERO);
        opts.negative_max_ttl = Some(Duration::ZERO);
        opts.use_hosts_file = ResolveHosts::Never;
        opts.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        opts.timeout = Duration::from_secs(2);
        let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| format!("DNS server {addr}: {e}"))?;
        Ok(Lookup::Server(Box::new(resolver)))
    }

    /// The host's addresses (A and AAAA).
    pub(crate) async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, String> {
        match self {
            Lookup::System => match tokio::net::lookup_host((host, 0)).await {
                Ok(addrs) => Ok(addrs.map(|a| a.ip()).collect()),
                Err(e) => Err(format!("cannot resolve {host}: {e}")),
            },
            Lookup::Server(resolver) => match resolver.lookup_ip(host).await {
                Ok(lookup) => Ok(lookup.iter().collect()),
                Err(e) if e.is_no_records_found() => Ok(Vec::new()),
                Err(e) => Err(format!("cannot resolve {host}: {e}")),
            },
        }
    }
}
