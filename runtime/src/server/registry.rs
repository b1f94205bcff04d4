//! Registration in etcd (contract §6): with `SVC_ETCD_ENDPOINTS` set, the
//! server puts `<service>/<address>` → `{"Addr":"<address>"}` (etcd's
//! naming format) for each of its services under a lease it keeps alive,
//! registers again whenever the lease is lost (etcd restarted, a long
//! pause), and when shutdown begins removes the keys and revokes the lease
//! before draining, so clients watching etcd stop sending new calls first.
//! A server killed outright drops out when its lease expires.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Error;
use crate::client::etcd::{self, Etcd};
use crate::log::{Level, Logger, Value};

/// Lease time-to-live: how long a killed server stays registered.
const DEFAULT_TTL: Duration = Duration::from_secs(10);

/// Where and what to register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registration {
    endpoints: String,
    advertise: Option<String>,
    ttl: Duration,
}

impl Registration {
    /// From `SVC_ETCD_ENDPOINTS`, `SVC_ADVERTISE_ADDR` and
    /// `SVC_ETCD_LEASE_TTL` (seconds, default 10); `None` without
    /// endpoints.
    pub(crate) fn from_lookup(env: impl Fn(&str) -> Option<String>) -> Result<Option<Registration>, Error> {
        let Some(endpoints) = env(etcd::ENDPOINTS_VARIABLE).filter(|v| !v.trim().is_empty()) else {
            return Ok(None);
        };
        let advertise = env("SVC_ADVERTISE_ADDR").filter(|v| !v.trim().is_empty()).map(|v| v.trim().to_owned());
        let ttl = match env("SVC_ETCD_LEASE_TTL").filter(|v| !v.trim().is_empty()) {
            None => DEFAULT_TTL,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(secs) if (1..=3600).contains(&secs) => Duration::from_secs(secs),
                _ => {
                    return Err(Error::Config {
                        variable: "SVC_ETCD_LEASE_TTL",
                        problem: format!("{v:?} is not a whole number of seconds from 1 to 3600, e.g. 10"),
                    });
                }
            },
        };
        Registration::new(endpoints, advertise, ttl).map(Some)
    }

    /// Registration in the etcd cluster at `endpoints` (comma-separated
    /// `http://host:port`), advertising `advertise` (default: the bound
    /// gRPC address), with leases of `ttl`.
    pub(crate) fn new(endpoints: String, advertise: Option<String>, ttl: Duration) -> Result<Registration, Error> {
        etcd::target_of(&endpoints).map_err(|problem| Error::Config { variable: etcd::ENDPOINTS_VARIABLE, problem })?;
        if let Some(a) = &advertise
            && !a.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        {
            return Err(Error::Config {
                variable: "SVC_ADVERTISE_ADDR",
                problem: format!("{a:?} is not host:port; write the address clients reach, e.g. 10.1.2.3:50051"),
            });
        }
        Ok(Registration { endpoints, advertise, ttl })
    }

    /// The address registered for a server bound to `bound`.
    fn address(&self, bound: SocketAddr) -> Result<String, Error> {
        match &self.advertise {
            Some(a) => Ok(a.clone()),
            None if bound.ip().is_unspecified() => Err(Error::Config {
                variable: "SVC_ADVERTISE_ADDR",
                problem: format!(
                    "the gRPC address {bound} is not one clients can reach; set SVC_ADVERTISE_ADDR to the address \
                     to register in etcd (in Kubernetes, the pod IP from the downward API and the port)"
                ),
            }),
            None => Ok(bound.to_string()),
        }
    }

    /// Starts registering `services` for the server bound to `bound`.
    pub(crate) async fn start(
        self,
        services: Vec<&'static str>,
        bound: SocketAddr,
        logger: Logger,
    ) -> Result<Registered, Error> {
        let address = self.address(bound)?;
        let etcd = Etcd::connect(&self.endpoints)
            .await
            .map_err(|problem| Error::Config { variable: etcd::ENDPOINTS_VARIABLE, problem })?;
        let keys: Vec<String> = services.iter().map(|s| format!("{s}/{address}")).collect();
        let lease = Arc::new(Mutex::new(None));
        let task = tokio::spawn(keep_registered(
            etcd.clone(),
            keys.clone(),
            etcd::registration_value(&address),
            self.ttl,
            lease.clone(),
            logger,
            self.endpoints.clone(),
        ));
        Ok(Registered { etcd, keys, lease, task, logger, endpoints: self.endpoints })
    }
}

/// A running registration; [`Registered::withdraw`] ends it.
pub(crate) struct Registered {
    etcd: Etcd,
    keys: Vec<String>,
    lease: Arc<Mutex<Option<i64>>>,
    task: tokio::task::JoinHandle<()>,
    logger: Logger,
    endpoints: String,
}

impl Registered {
    /// Removes the keys and revokes the lease (within 2 s; past that the
    /// lease expires on its own).
    pub(crate) async fn withdraw(self) {
        self.task.abort();
        let lease = *self.lease.lock().unwrap_or_else(|e| e.into_inner());
        let work = async {
            for key in &self.keys {
                self.etcd.delete(key).await?;
            }
            if let Some(id) = lease {
                self.etcd.revoke(id).await?;
            }
            Ok::<(), tonic::Status>(())
        };
        let keys = self.keys.join(",");
        match tokio::time::timeout(Duration::from_secs(2), work).await {
            Ok(Ok(())) => {
                self.logger.log(Level::Info, "deregistered from etcd", &[("keys", Value::Str(&keys))]);
            }
            Ok(Err(status)) => self.logger.log(
                Level::Warn,
                "could not deregister from etcd; the lease will expire",
                &[("etcd", Value::Str(&self.endpoints)), ("error", Value::Str(status.message()))],
            ),
            Err(_) => self.logger.log(
                Level::Warn,
                "etcd did not answer the deregistration within 2 s; the lease will expire",
                &[("etcd", Value::Str(&self.endpoints))],
            ),
        }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Registers, keeps the lease alive, and registers again whenever that
/// fails, with backoff (1 s doubling to 30 s).
async fn keep_registered(
    etcd: Etcd,
    keys: Vec<String>,
    value: String,
    ttl: Duration,
    lease: Arc<Mutex<Option<i64>>>,
    logger: Logger,
    endpoints: String,
) {
    let mut wait = Duration::from_secs(1);
    loop {
        let problem = match register_once(&etcd, &keys, &value, ttl, &lease, &logger).await {
            Ok(()) => {
                wait = Duration::from_secs(1);
                "etcd ended the lease".to_owned()
            }
            Err(status) => status.message().to_owned(),
        };
        logger.log(
            Level::Warn,
            "etcd registration lost; registering again",
            &[
                ("etcd", Value::Str(&endpoints)),
                ("error", Value::Str(&problem)),
                ("retry_in_seconds", Value::Num(wait.as_secs_f64())),
            ],
        );
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

async fn register_once(
    etcd: &Etcd,
    keys: &[String],
    value: &str,
    ttl: Duration,
    lease: &Mutex<Option<i64>>,
    logger: &Logger,
) -> Result<(), tonic::Status> {
    let (id, granted) = etcd.grant(ttl).await?;
    *lease.lock().unwrap_or_else(|e| e.into_inner()) = Some(id);
    for key in keys {
        etcd.put(key, value, id).await?;
    }
    let joined = keys.join(",");
    logger.log(
        Level::Info,
        "registered in etcd",
        &[("keys", Value::Str(&joined)), ("lease_ttl_seconds", Value::Num(granted as f64))],
    );
    // Keepalives at a third of the TTL, as etcd's own clients send them.
    let every = Duration::from_secs(u64::try_from(granted).unwrap_or(1).max(1)) / 3;
    let mut answers = etcd.keep_alive(id, every).await?;
    while let Some(answer) = answers.message().await? {
        if answer.ttl <= 0 {
            return Ok(());
        }
    }
    Err(tonic::Status::unavailable("the keepalive stream ended"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn registration_comes_from_the_environment() {
        assert_eq!(Registration::from_lookup(lookup(&[])).expect("none"), None);
        let r = Registration::from_lookup(lookup(&[("SVC_ETCD_ENDPOINTS", "http://127.0.0.1:2379")]))
            .expect("valid")
            .expect("some");
        assert_eq!(r.ttl, DEFAULT_TTL);
        assert_eq!(r.address("127.0.0.1:50051".parse().expect("addr")).expect("bound"), "127.0.0.1:50051");
        let unspecified = r.address("0.0.0.0:50051".parse().expect("addr")).expect_err("unreachable");
        assert!(unspecified.to_string().contains("SVC_ADVERTISE_ADDR"), "{unspecified}");
        let with = Registration::from_lookup(lookup(&[
            ("SVC_ETCD_ENDPOINTS", "http://127.0.0.1:2379"),
            ("SVC_ADVERTISE_ADDR", "10.1.2.3:50051"),
            ("SVC_ETCD_LEASE_TTL", "3"),
        ]))
        .expect("valid")
        .expect("some");
        assert_eq!(
            (with.ttl, with.address("0.0.0.0:1".parse().expect("addr")).expect("advertised")),
            (Duration::from_secs(3), "10.1.2.3:50051".to_owned())
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let error = |vars: &[(&str, &str)]| Registration::from_lookup(lookup(vars)).expect_err("bad").to_string();
        assert!(error(&[("SVC_ETCD_ENDPOINTS", "ftp://x:1")]).starts_with("SVC_ETCD_ENDPOINTS: "));
        let advertise = error(&[("SVC_ETCD_ENDPOINTS", "http://127.0.0.1:2379"), ("SVC_ADVERTISE_ADDR", "pod")]);
        assert!(advertise.starts_with("SVC_ADVERTISE_ADDR: \"pod\" is not host:port"), "{advertise}");
        let ttl = error(&[("SVC_ETCD_ENDPOINTS", "http://127.0.0.1:2379"), ("SVC_ETCD_LEASE_TTL", "0")]);
        assert!(ttl.starts_with("SVC_ETCD_LEASE_TTL: "), "{ttl}");
    }
}
