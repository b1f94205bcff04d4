//! Targets in gRPC's naming syntax.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The forms a target may take, for error messages.
pub const FORMS: &str = "dns:///host:port (or host:port), dns://dns-server-ip:53/host:port, \
ipv4:1.2.3.4:50051,1.2.3.5:50051, ipv6:[::1]:50051, unix:/path/to/socket, etcd:///package.Service";

/// Where a client's calls go: what to resolve, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A host name resolved through DNS, re-resolved while the client
    /// lives (a Kubernetes headless Service gives one address per pod).
    Dns {
        /// The DNS server to ask (`dns://server:53/host`); `None` uses
        /// the system's resolver.
        server: Option<SocketAddr>,
        /// The host name.
        host: String,
        /// The port (the service's annotated port when the target names
        /// none).
        port: u16,
    },
    /// Fixed addresses (`ipv4:`/`ipv6:` lists, `unix:` paths, or a host
    /// that is an IP address).
    Static(Vec<Address>),
    /// Service addresses registered in etcd under the service's name.
    Etcd {
        /// The registered name, e.g. `greeter.v1.Greeter`.
        service: String,
    },
}

/// One endpoint's address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    /// TCP.
    Tcp(SocketAddr),
    /// A Unix domain socket.
    Unix(PathBuf),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(a) => write!(f, "{a}"),
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

impl Target {
    /// Parses `text`; a target without a port gets `default_port`.
    pub fn parse(text: &str, default_port: u16) -> Result<Target, String> {
        let bad = |why: String| format!("target {text:?}: {why}; accepted forms: {FORMS}");
        let t = text.trim();
        if t.is_empty() {
            return Err(bad("is empty".into()));
        }
        if let Some(rest) = t.strip_prefix("unix:") {
            // unix:/abs/path, unix:relative, unix:///abs/path
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(bad("names no socket path".into()));
            }
            return Ok(Target::Static(vec![Address::Unix(PathBuf::from(path))]));
        }
        if let Some(rest) = t.strip_prefix("ipv4:") {
            return Self::ip_list(rest, default_port, false).map(Target::Static).map_err(bad);
        }
        if let Some(rest) = t.strip_prefix("ipv6:") {
            return Self::ip_list(rest, default_port, true).map(Target::Static).map_err(bad);
        }
        if let Some(rest) = t.strip_prefix("etcd:") {
            let name =
                rest.strip_prefix("///").ok_or_else(|| bad("etcd targets are etcd:///package.Service".into()))?;
            let valid = !name.is_empty()
                && name.split('.').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            if !valid {
                return Err(bad(format!("{name:?} is not a fully-qualified service name such as greeter.v1.Greeter")));
            }
            return Ok(Target::Etcd { service: name.to_owned() });
        }
        let (server, hostport) = if let Some(rest) = t.strip_prefix("dns:") {
            match rest.strip_prefix("//") {
                Some(after) => {
                    let (authority, hostport) =
                        after.split_once('/').ok_or_else(|| bad("dns targets are dns:///host:port".into()))?;
                    (Self::dns_server(authority).map_err(bad)?, hostport)
                }
                None => (None, rest),
            }
        } else if let Some((scheme, _)) = t.split_once("://") {
            return Err(bad(format!("the scheme {scheme:?} is not one this client resolves")));
        } else {
            (None, t)
        };
        let (host, port) = Self::host_port(hostport, default_port).map_err(bad)?;
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(Target::Static(vec![Address::Tcp(SocketAddr::new(ip, port))]));
        }
        let valid = host.len() <= 253
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if !valid {
            return Err(bad(format!("{host:?} is not a host name")));
        }
        Ok(Target::Dns { server, host, port })
    }

    /// The authority of a `dns://authority/host` target: the DNS server.
    fn dns_server(authority: &str) -> Result<Option<SocketAddr>, String> {
        if authority.is_empty() {
            return Ok(None);
        }
        let (host, port) = Self::host_port(authority, 53)?;
        match host.parse::<IpAddr>() {
            Ok(ip) => Ok(Some(SocketAddr::new(ip, port))),
            Err(_) => Err(format!("the DNS server {authority:?} must be an IP address")),
        }
    }

    /// `host[:port]` or `[v6][:port]`.
    fn host_port(text: &str, default_port: u16) -> Result<(String, u16), String> {
        if text.is_empty() {
            return Err("names no host".into());
        }
        let port = |p: &str| p.parse::<u16>().map_err(|_| format!("{p:?} is not a port number"));
        if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| format!("{text:?} lacks the closing `]`"))?;
            if after.is_empty() {
                return Ok((host.to_owned(), default_port));
            }
            return match after.strip_prefix(':') {
                Some(p) => Ok((host.to_owned(), port(p)?)),
                None => Err(format!("unexpected {after:?} after {host:?}")),
            };
        }
        match text.rsplit_once(':') {
            // More than one colon and no brackets: a bare IPv6 address.
            Some((host, _)) if host.contains(':') => Ok((text.to_owned(), default_port)),
            Some((host, p)) if !host.is_empty() => Ok((host.to_owned(), port(p)?)),
            Some(_) => Err("names no host".into()),
            None => Ok((text.to_owned(), default_port)),
        }
    }

    fn ip_list(list: &str, default_port: u16, v6: bool) -> Result<Vec<Address>, String> {
        let mut out = Vec::new();
        for item in list.split(',') {
            let (host, port) = Self::host_port(item.trim(), default_port)?;
            let ip: IpAddr = host.parse().map_err(|_| format!("{host:?} is not an IP address"))?;
            if ip.is_ipv6() != v6 {
                return Err(format!("{ip} is not an IPv{} address", if v6 { 6 } else { 4 }));
            }
            out.push(Address::Tcp(SocketAddr::new(ip, port)));
        }
        Ok(out)
    }

    /// The `:authority` calls carry (and the TLS server name by default).
    pub fn authority(&self) -> String {
        match self {
            Target::Dns { host, port, .. } => format!("{host}:{port}"),
            Target::Static(addresses) => match addresses.first() {
                Some(Address::Tcp(a)) => a.to_string(),
                _ => "localhost".to_owned(),
            },
            Target::Etcd { service } => service.clone(),
        }
    }

    /// The host part of [`Target::authority`].
    pub fn host(&self) -> String {
        match self {
            Target::Dns { host, .. } => host.clone(),
            Target::Static(addresses) => match addresses.first() {
                Some(Address::Tcp(a)) => a.ip().to_string(),
                _ => "localhost".to_owned(),
            },
            Target::Etcd { service } => service.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(s: &str) -> Address {
        Address::Tcp(s.parse().expect("addr"))
    }

    #[test]
    fn the_forms_of_grpc_naming() {
        let dns = |host: &str, port| Target::Dns { server: None, host: host.into(), port };
        assert_eq!(Target::parse("greeter:50051", 1), Ok(dns("greeter", 50051)));
        assert_eq!(Target::parse("greeter", 7), Ok(dns("greeter", 7)));
        assert_eq!(Target::parse("dns:///greeter.default.svc:50051", 1), Ok(dns("greeter.default.svc", 50051)));
        assert_eq!(Target::parse("dns:greeter:9", 1), Ok(dns("greeter", 9)));
        let server = Some("127.0.0.1:5353".parse().expect("addr"));
        assert_eq!(
            Target::parse("dns://127.0.0.1:5353/greeter.test:80", 1),
            Ok(Target::Dns { server, host: "greeter.test".into(), port: 80 })
        );
        assert_eq!(Target::parse("127.0.0.1:1234", 1), Ok(Target::Static(vec![tcp("127.0.0.1:1234")])));
        assert_eq!(
            Target::parse("ipv4:10.0.0.1:1,10.0.0.2", 5),
            Ok(Target::Static(vec![tcp("10.0.0.1:1"), tcp("10.0.0.2:5")]))
        );
        assert_eq!(Target::parse("ipv6:[::1]:50051", 1), Ok(Target::Static(vec![tcp("[::1]:50051")])));
        assert_eq!(Target::parse("ipv6:::1", 3), Ok(Target::Static(vec![tcp("[::1]:3")])));
        assert_eq!(Target::parse("[::1]:8", 3), Ok(Target::Static(vec![tcp("[::1]:8")])));
        let unix = Target::Static(vec![Address::Unix("/tmp/s.sock".into())]);
        assert_eq!(Target::parse("unix:/tmp/s.sock", 1), Ok(unix.clone()));
        assert_eq!(Target::parse("unix:///tmp/s.sock", 1), Ok(unix));
        let etcd = Target::Etcd { service: "greeter.v1.Greeter".into() };
        assert_eq!(Target::parse("etcd:///greeter.v1.Greeter", 1), Ok(etcd));
    }

    #[test]
    fn malformed_targets_name_the_target_and_the_forms() {
        for (bad, why) in [
            ("", "is empty"),
            ("greeter:http", "\"http\" is not a port number"),
            ("greeter:70000", "is not a port number"),
            ("ipv4:1.2.3", "is not an IP address"),
            ("ipv4:[::1]:5", "is not an IPv4 address"),
            ("ipv6:1.2.3.4:5", "is not an IPv6 address"),
            ("http://greeter:80", "the scheme \"http\""),
            ("etcd://x/greeter", "etcd:///package.Service"),
            ("etcd:///greeter..v1", "not a fully-qualified service name"),
            ("unix:", "names no socket path"),
            ("dns://dns.example/greeter", "must be an IP address"),
            ("bad host!:5", "is not a host name"),
            ("[::1", "lacks the closing"),
            (":50051", "names no host"),
        ] {
            let e = Target::parse(bad, 50051).expect_err(bad);
            assert!(e.starts_with(&format!("target {bad:?}: ")), "{e}");
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("accepted forms: dns:///host:port"), "{e}");
        }
    }
}
