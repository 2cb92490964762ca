//! The share of the connection cap one client may hold
//! (`--max-connections-per-client`).
//!
//! Without it one address can open every one of `--max-connections` and
//! hold them (silent, or sending a large header slowly until the header
//! timeout), and nobody else is served. A client is its address as
//! [`ClientId::address`] counts it (an IPv6 address by its /64, so one
//! subscriber cannot pass the share by using more of its addresses).
//! Connections from a trusted proxy (`--trusted-proxy`) are many clients
//! behind one address and are not counted.
//!
//! A connection over the share is answered `503` with `Connection: close`
//! and closed without serving its request; the client's other connections
//! carry on.

use airq_core::ClientId;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Open connections per client. Holds an entry only for a client with a
/// connection open, so at most `--max-connections` entries.
pub struct ClientConnections {
    /// The share; 0 for none.
    max: usize,
    exempt: Vec<IpNet>,
    open: Mutex<HashMap<ClientId, usize>>,
}

/// One counted connection; gives its place back when dropped.
pub struct Counted {
    owner: Arc<ClientConnections>,
    client: ClientId,
}

/// What [`ClientConnections::admit`] decided.
pub enum Admitted {
    /// Counted, or not counted at all (no share, or a trusted proxy).
    Yes(Option<Counted>),
    /// The client already has `max` connections open.
    OverShare { max: usize },
}

impl ClientConnections {
    pub fn new(max: usize, exempt: Vec<IpNet>) -> Arc<Self> {
        Arc::new(ClientConnections {
            max,
            exempt,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// Counts a new connection from `peer`, unless its client already has
    /// its share open.
    pub fn admit(self: &Arc<Self>, peer: IpAddr) -> Admitted {
        // An IPv4 peer on a dual-stack listener is `::ffff:a.b.c.d`; the
        // trusted list names it as `a.b.c.d`.
        let peer = peer.to_canonical();
        if self.max == 0 || self.exempt.iter().any(|net| net.contains(&peer)) {
            return Admitted::Yes(None);
        }
        let client = ClientId::address(peer);
        let mut open = self.lock();
        let n = open.entry(client).or_insert(0);
        if *n >= self.max {
            return Admitted::OverShare { max: self.max };
        }
        *n += 1;
        Admitted::Yes(Some(Counted {
            owner: self.clone(),
            client,
        }))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ClientId, usize>> {
        // Every update is one step of one counter: consistent after a panic.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Clients with a connection open (for tests).
    #[cfg(test)]
    fn clients(&self) -> usize {
        self.lock().len()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let mut open = self.owner.lock();
        if let Some(n) = open.get_mut(&self.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// The whole answer to a connection over its client's share: the JSON
/// error shape of every other error, sent before anything is read.
pub fn over_share_response(max: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "error": format!(
            "too many connections from this address: at most {max} at once; \
             close some (or reuse them: HTTP keep-alive) and retry"
        )
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\n\
         content-type: application/json\r\n\
         x-content-type-options: nosniff\r\n\
         retry-after: 1\r\n\
         connection: close\r\n\
         content-length: {}\r\n\
         \r\n\
         {body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_client_holds_at_most_its_share_and_gets_places_back() {
        let c = ClientConnections::new(2, Vec::new());
        let a1 = c.admit(ip("192.0.2.1"));
        let a2 = c.admit(ip("192.0.2.1"));
        assert!(matches!(a1, Admitted::Yes(Some(_))));
        assert!(matches!(a2, Admitted::Yes(Some(_))));
        assert!(matches!(
            c.admit(ip("192.0.2.1")),
            Admitted::OverShare { max: 2 }
        ));
        // Another client is not affected.
        let b = c.admit(ip("192.0.2.2"));
        assert!(matches!(b, Admitted::Yes(Some(_))));
        drop(a1);
        assert!(matches!(c.admit(ip("192.0.2.1")), Admitted::Yes(Some(_))));
        drop((a2, b));
        // The third of 192.0.2.1 was dropped at once above: nothing left.
        assert_eq!(c.clients(), 0);
    }

    #[test]
    fn one_ipv6_subscriber_is_one_client_and_proxies_are_not_counted() {
        let c = ClientConnections::new(1, vec!["10.0.0.0/8".parse().unwrap()]);
        let _a = c.admit(ip("2001:db8:1:2::1"));
        assert!(matches!(
            c.admit(ip("2001:db8:1:2::ffff")),
            Admitted::OverShare { .. }
        ));
        assert!(matches!(
            c.admit(ip("2001:db8:1:3::1")),
            Admitted::Yes(Some(_))
        ));
        for _ in 0..5 {
            assert!(matches!(c.admit(ip("10.1.2.3")), Admitted::Yes(None)));
            // The same proxy, as a dual-stack listener sees it.
            assert!(matches!(
                c.admit(ip("::ffff:10.1.2.3")),
                Admitted::Yes(None)
            ));
        }
        let off = ClientConnections::new(0, Vec::new());
        assert!(matches!(off.admit(ip("192.0.2.1")), Admitted::Yes(None)));
    }

    #[test]
    fn the_refusal_is_one_complete_http_response() {
        let r = String::from_utf8(over_share_response(64)).unwrap();
        let (head, body) = r.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(v["error"].as_str().unwrap().contains("at most 64"));
    }
}
