//! Who is asking: the client's IP address, for the core's per-client limits.
//!
//! The TCP peer is the client unless it is one of `http.trusted_proxies`; then (and on
//! the Unix socket, where the peer is always the reverse proxy) the client is the
//! right-most `X-Forwarded-For` entry that is not itself a trusted proxy.
//!
//! ```text
//! peer 192.0.2.7, no trusted proxies,  X-Forwarded-For: 1.2.3.4   -> 192.0.2.7
//! peer 127.0.0.1, trusted 127.0.0.1,   X-Forwarded-For: 1.2.3.4   -> 1.2.3.4
//! Unix socket,                         X-Forwarded-For: 6.6.6.6, 1.2.3.4 -> 1.2.3.4
//! Unix socket, no header                                          -> unknown (one shared bucket)
//! ```
//!
//! `http.trusted_proxies` is parsed when the configuration loads ([`IpNet`]): a bad
//! entry stops the start (or is refused by a reload), it is never skipped here.

use std::net::{IpAddr, SocketAddr};

use crate::config::IpNet;

/// One `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:5`, `[::1]:5`).
fn forwarded_entry(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    s.parse::<SocketAddr>().ok().map(|a| a.ip().to_canonical())
}

/// The client's address. `forwarded_for` is every `X-Forwarded-For` header joined with
/// commas, in the order received; `peer` is `None` on the Unix socket.
pub fn client_ip(
    peer: Option<SocketAddr>,
    forwarded_for: Option<&str>,
    trusted_proxies: &[IpNet],
) -> Option<IpAddr> {
    let peer_ip = peer.map(|p| p.ip().to_canonical());
    let is_trusted = |ip: IpAddr| trusted_proxies.iter().any(|n| n.contains(ip));
    if peer_ip.is_some_and(|ip| !is_trusted(ip)) {
        return peer_ip;
    }
    let Some(header) = forwarded_for else {
        return peer_ip;
    };
    let mut leftmost = None;
    for entry in header.rsplit(',') {
        match forwarded_entry(entry) {
            Some(ip) if is_trusted(ip) => leftmost = Some(ip),
            Some(ip) => return Some(ip),
            // Garbage: nothing left of it can be believed.
            None => break,
        }
    }
    leftmost.or(peer_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(s: &str) -> Option<SocketAddr> {
        Some(SocketAddr::new(s.parse().expect("ip"), 40000))
    }

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().expect("ip"))
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| IpNet::parse(s).expect("net")).collect()
    }

    #[test]
    fn forwarded_for_only_from_trusted_peers() {
        let none: Vec<IpNet> = Vec::new();
        let lo = nets(&["127.0.0.1"]);
        assert_eq!(
            client_ip(peer("192.0.2.7"), Some("1.2.3.4"), &none),
            ip("192.0.2.7")
        );
        assert_eq!(
            client_ip(peer("127.0.0.1"), Some("1.2.3.4"), &lo),
            ip("1.2.3.4")
        );
        // A client cannot pick its address by prepending entries.
        assert_eq!(
            client_ip(peer("127.0.0.1"), Some("6.6.6.6, 1.2.3.4"), &lo),
            ip("1.2.3.4")
        );
        // Proxies in a chain are skipped when trusted.
        let chain = nets(&["127.0.0.1", "10.0.0.0/8"]);
        assert_eq!(
            client_ip(peer("127.0.0.1"), Some("1.2.3.4, 10.1.2.3"), &chain),
            ip("1.2.3.4")
        );
        assert_eq!(client_ip(peer("127.0.0.1"), None, &lo), ip("127.0.0.1"));
        assert_eq!(
            client_ip(peer("127.0.0.1"), Some("bogus"), &lo),
            ip("127.0.0.1")
        );
        // IPv4-mapped peers match IPv4 entries.
        assert_eq!(
            client_ip(peer("::ffff:127.0.0.1"), Some("[2001:db8::1]:443"), &lo),
            ip("2001:db8::1")
        );
        // On the Unix socket the peer is the proxy.
        assert_eq!(client_ip(None, Some("1.2.3.4"), &none), ip("1.2.3.4"));
        assert_eq!(client_ip(None, None, &none), None);
        assert!(IpNet::parse("10.0.0.0/33").is_err());
        assert!(IpNet::parse("x").is_err());
        assert!(IpNet::parse("::1").is_ok());
    }
}
