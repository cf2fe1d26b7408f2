//! Classes of clients by address: networks (CIDR), a weight, caps and a connection limit.

use std::fmt;
use std::net::IpAddr;

/// A network in CIDR notation: `10.0.0.0/8`, `2001:db8::/32`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    /// Parses `addr/prefix` or a bare address.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let help = "expected a network such as 10.0.0.0/8, 192.168.1.7 or 2001:db8::/32";
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("'{s}' is not a network; {help}"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.trim()
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| format!("'{s}' has a bad prefix length (0 to {max}); {help}"))?
        };
        Ok(Self { addr, prefix })
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count as IPv4).
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let bits = |a: IpAddr| -> (u128, u8) {
            match a.to_canonical() {
                IpAddr::V4(v) => (u128::from(u32::from(v)) << 96, 32),
                IpAddr::V6(v) => (u128::from(v), 128),
            }
        };
        let ((net, nw), (x, xw)) = (bits(self.addr), bits(ip));
        if nw != xw {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        net & mask == x & mask
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A class of clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Class {
    pub(crate) name: String,
    pub(crate) networks: Vec<Net>,
    /// Weight of each of its groups (hosts, or connections), under `policy = "weighted"`.
    pub(crate) weight: u32,
    /// Caps (to clients, from clients) on each of its groups.
    pub(crate) caps: (Option<u64>, Option<u64>),
    /// Most clients of the class at once.
    pub(crate) max_connections: Option<usize>,
}

impl Class {
    /// The class of unmatched clients, when the file names none.
    pub(crate) fn default_class() -> Self {
        Self {
            name: "default".to_owned(),
            networks: Vec::new(),
            weight: 1,
            caps: (None, None),
            max_connections: None,
        }
    }
}

/// The classes, in order, and the default: the first class with a network holding the address
/// wins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Classes {
    pub(crate) list: Vec<Class>,
    pub(crate) default: Class,
}

impl Classes {
    /// The index of `ip`'s class: a class of the list, or `list.len()` for the default.
    pub(crate) fn of(&self, ip: Option<IpAddr>) -> usize {
        ip.and_then(|ip| {
            self.list
                .iter()
                .position(|c| c.networks.iter().any(|n| n.contains(ip)))
        })
        .unwrap_or(self.list.len())
    }

    /// The class at `index` (the default past the list).
    pub(crate) fn get(&self, index: usize) -> &Class {
        self.list.get(index).unwrap_or(&self.default)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_hold_what_their_prefix_says() {
        let n = Net::parse("10.1.0.0/16").unwrap();
        assert!(n.contains("10.1.200.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert!(
            n.contains("::ffff:10.1.0.9".parse().unwrap()),
            "IPv4-mapped"
        );
        assert!(
            Net::parse("127.0.0.2")
                .unwrap()
                .contains("127.0.0.2".parse().unwrap())
        );
        assert!(
            Net::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            !Net::parse("::/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "nope", "1.2.3/8", "::1/129"] {
            assert!(Net::parse(bad).unwrap_err().contains("10.0.0.0/8"), "{bad}");
        }
    }

    #[test]
    fn the_first_matching_class_wins_and_the_rest_is_default() {
        let class = |name: &str, nets: &[&str]| Class {
            name: name.to_owned(),
            networks: nets.iter().map(|n| Net::parse(n).unwrap()).collect(),
            ..Class::default_class()
        };
        let c = Classes {
            list: vec![class("a", &["127.0.0.2"]), class("b", &["127.0.0.0/8"])],
            default: Class::default_class(),
        };
        assert_eq!(c.of(Some("127.0.0.2".parse().unwrap())), 0);
        assert_eq!(c.of(Some("127.0.0.3".parse().unwrap())), 1);
        assert_eq!(c.of(Some("10.0.0.1".parse().unwrap())), 2);
        assert_eq!(c.of(None), 2);
        assert_eq!(c.get(2).name, "default");
    }
}
