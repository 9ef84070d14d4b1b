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

use std::net::{IpAddr, SocketAddr};

/// One entry of `http.trusted_proxies`: an address, or a network written `addr/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Net {
    addr: IpAddr,
    len: u8,
}

impl Net {
    fn parse(s: &str) -> Option<Net> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().ok()?)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        (len <= max).then_some(Net { addr, len })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), self.len),
            _ => false,
        }
    }
}

fn prefix_eq(a: &[u8], b: &[u8], len: u8) -> bool {
    let len = usize::from(len);
    let (bytes, bits) = (len / 8, len % 8);
    if a[..bytes] != b[..bytes] {
        return false;
    }
    if bits == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - bits);
    a[bytes] & mask == b[bytes] & mask
}

/// The configured trusted proxies; entries that are not addresses are ignored (and
/// reported once at start by [`invalid_proxies`]).
fn trusted(list: &[String]) -> Vec<Net> {
    list.iter().filter_map(|s| Net::parse(s)).collect()
}

/// Entries of `http.trusted_proxies` that are neither an address nor `addr/len`.
pub fn invalid_proxies(list: &[String]) -> Vec<String> {
    list.iter()
        .filter(|s| Net::parse(s).is_none())
        .cloned()
        .collect()
}

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
    trusted_proxies: &[String],
) -> Option<IpAddr> {
    let peer_ip = peer.map(|p| p.ip().to_canonical());
    let nets = trusted(trusted_proxies);
    let is_trusted = |ip: IpAddr| nets.iter().any(|n| n.contains(ip));
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

    #[test]
    fn forwarded_for_only_from_trusted_peers() {
        let none: Vec<String> = Vec::new();
        let lo = vec!["127.0.0.1".to_owned()];
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
        let chain = vec!["127.0.0.1".to_owned(), "10.0.0.0/8".to_owned()];
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
        assert_eq!(
            invalid_proxies(&["10.0.0.0/33".into(), "::1".into(), "x".into()]),
            vec!["10.0.0.0/33".to_owned(), "x".to_owned()]
        );
    }
}
