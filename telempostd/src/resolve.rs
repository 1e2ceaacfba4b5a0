//! Name resolution for the agent without a thread per request.
//!
//! With a global timeout set, ureq's default resolver spawns a thread for every request (to
//! bound `getaddrinfo`), even for an IP literal and even when a pooled connection is reused: on
//! a loaded machine that thread start dominated a loopback POST. This resolver answers IP
//! literals directly and remembers a name's addresses for [`TTL`], delegating misses to the
//! default resolver (which keeps its timeout). The resolver trait is ureq's `unversioned` API;
//! Cargo.lock pins the ureq version it was written against.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::config::Config;
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::NextTimeout;

/// How long a resolved name is reused (connections to it are kept alive longer than this anyway).
pub const TTL: Duration = Duration::from_secs(60);

/// IP literals directly, names through the default resolver with a small cache.
#[derive(Debug, Default)]
pub struct CachingResolver {
    inner: DefaultResolver,
    /// The last name looked up: one collector per agent, so one entry is enough.
    last: Mutex<Option<(String, Instant, Vec<SocketAddr>)>>,
}

impl CachingResolver {
    fn addrs(&self, list: &[SocketAddr]) -> ResolvedSocketAddrs {
        let mut out = self.empty();
        for a in list.iter().take(16) {
            out.push(*a);
        }
        out
    }
}

/// `host:port` of a URI, with the scheme's default port.
pub fn host_and_port(uri: &Uri) -> Option<String> {
    let port = uri.port_u16().or_else(|| match uri.scheme_str() {
        Some("https") => Some(443),
        Some("http") => Some(80),
        _ => None,
    })?;
    Some(format!("{}:{port}", uri.host()?))
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let Some(key) = host_and_port(uri) else {
            return self.inner.resolve(uri, config, timeout);
        };
        // "127.0.0.1:80" and "[::1]:80" parse as socket addresses.
        if let Ok(a) = key.parse::<SocketAddr>() {
            return Ok(self.addrs(&[a]));
        }
        if let Ok(guard) = self.last.lock() {
            if let Some((k, at, list)) = guard.as_ref() {
                if *k == key && at.elapsed() < TTL {
                    return Ok(self.addrs(list));
                }
            }
        }
        let fresh = self.inner.resolve(uri, config, timeout)?;
        if let Ok(mut guard) = self.last.lock() {
            *guard = Some((key, Instant::now(), fresh.to_vec()));
        }
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn literals_are_answered_directly() {
        let r = CachingResolver::default();
        let cfg = Config::default();
        let t = NextTimeout::default();
        let u: Uri = "http://127.0.0.1:8080/v2/collector".parse().unwrap();
        assert_eq!(
            &r.resolve(&u, &cfg, t).unwrap()[..],
            ["127.0.0.1:8080".parse().unwrap()]
        );
        let u: Uri = "https://[::1]/x".parse().unwrap();
        assert_eq!(
            &r.resolve(&u, &cfg, t).unwrap()[..],
            ["[::1]:443".parse().unwrap()]
        );
        assert!(r.last.lock().unwrap().is_none());
        let u: Uri = "http://localhost:9/".parse().unwrap();
        let first = r.resolve(&u, &cfg, t).unwrap().to_vec();
        assert!(!first.is_empty());
        assert_eq!(r.last.lock().unwrap().as_ref().unwrap().0, "localhost:9");
        assert_eq!(r.resolve(&u, &cfg, t).unwrap().to_vec(), first);
    }
}
