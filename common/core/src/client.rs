//! Who a request is charged to: the API key it presented, or, without one,
//! the address it came from. Rate limits and the cap on queued work are
//! kept per client, and a result records its client so that the cap can
//! count what is still queued (and, for a key, so that only that key reads
//! it).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientId {
    /// A key, by its public id (never the key itself).
    Key(Uuid),
    /// An anonymous client, by address. IPv6 addresses are cut to their
    /// /64: one subscriber usually gets a whole /64, and counting each of
    /// its addresses apart would give one machine 2^64 budgets.
    Address(IpAddr),
}

impl ClientId {
    /// The client for a request without a key from `addr`.
    pub fn address(addr: IpAddr) -> ClientId {
        let addr = match addr {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(Ipv6Addr::from(bits))
                }
            },
            v4 => v4,
        };
        ClientId::Address(addr)
    }

    /// The key that owns what this client submits, if it is one.
    pub fn key(&self) -> Option<Uuid> {
        match self {
            ClientId::Key(id) => Some(*id),
            ClientId::Address(_) => None,
        }
    }
}

impl fmt::Display for ClientId {
    /// `key:<uuid>`, `addr:<IPv4>` or `addr:<IPv6 /64 prefix>/64`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientId::Key(id) => write!(f, "key:{id}"),
            ClientId::Address(IpAddr::V4(a)) => write!(f, "addr:{a}"),
            ClientId::Address(IpAddr::V6(a)) => write!(f, "addr:{a}/64"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a client (`key:<uuid>` or `addr:<address>`)")]
pub struct ClientIdError(String);

impl FromStr for ClientId {
    type Err = ClientIdError;

    fn from_str(s: &str) -> Result<ClientId, ClientIdError> {
        let err = || ClientIdError(s.to_owned());
        if let Some(id) = s.strip_prefix("key:") {
            return id.parse().map(ClientId::Key).map_err(|_| err());
        }
        let addr = s.strip_prefix("addr:").ok_or_else(err)?;
        let addr = addr.strip_suffix("/64").unwrap_or(addr);
        addr.parse().map(ClientId::address).map_err(|_| err())
    }
}

impl Serialize for ClientId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ClientId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ClientId, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_round_trip_as_text() {
        let key = ClientId::Key(Uuid::new_v4());
        for c in [
            key,
            ClientId::address("203.0.113.9".parse().unwrap()),
            ClientId::address("2001:db8:1:2::1".parse().unwrap()),
        ] {
            assert_eq!(c.to_string().parse::<ClientId>().unwrap(), c);
        }
        assert_eq!(
            key.key(),
            Some(match key {
                ClientId::Key(id) => id,
                _ => unreachable!(),
            })
        );
        for bad in ["", "key:nope", "addr:", "addr:300.1.1.1", "203.0.113.9"] {
            assert!(bad.parse::<ClientId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_ipv6_client_is_its_64_prefix() {
        let a = ClientId::address("2001:db8:1:2::1".parse().unwrap());
        let b = ClientId::address("2001:db8:1:2:ffff:ee:dd:cc".parse().unwrap());
        let c = ClientId::address("2001:db8:1:3::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "addr:2001:db8:1:2::/64");
        assert_eq!(a.key(), None);
        let mapped = ClientId::address("::ffff:198.51.100.7".parse().unwrap());
        assert_eq!(mapped, ClientId::address("198.51.100.7".parse().unwrap()));
    }
}
