//! Classes of clients by address: networks (CIDR), a weight, caps and a connection limit.

use std::net::IpAddr;

use ipnet::IpNet;

use super::prefixes::PrefixTable;

/// A class of clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Class {
    pub(crate) name: String,
    pub(crate) networks: Vec<IpNet>,
    /// Weight of each of its groups (hosts, or connections), under `policy = "weighted"`.
    pub(crate) weight: u32,
    /// Caps (to clients, from clients): under `policy = "hierarchical"` on the class as a
    /// whole, under the other policies on each of its groups (hosts, or connections).
    pub(crate) caps: (Option<u64>, Option<u64>),
    /// Caps (to clients, from clients) on each client address of the class, under
    /// `policy = "hierarchical"`.
    pub(crate) each: (Option<u64>, Option<u64>),
    /// Guarantees (to clients, from clients) of the class as a whole, under
    /// `policy = "hierarchical"`.
    pub(crate) mins: (Option<u64>, Option<u64>),
    /// Most clients of the class at once.
    pub(crate) max_connections: Option<usize>,
}

impl Class {
    /// Whether it has a guarantee or a per-address cap: settings for a class above its
    /// addresses.
    pub(crate) fn is_three_level(&self) -> bool {
        self.mins != (None, None) || self.each != (None, None)
    }

    /// The class of unmatched clients, when the file names none.
    pub(crate) fn default_class() -> Self {
        Self {
            name: "default".to_owned(),
            networks: Vec::new(),
            weight: 1,
            caps: (None, None),
            each: (None, None),
            mins: (None, None),
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
    /// Each network to the index of the first class naming it.
    table: PrefixTable<usize>,
}

impl Classes {
    /// The classes `list`, in order, and the class of every other client.
    pub(crate) fn new(list: Vec<Class>, default: Class) -> Self {
        let mut table = PrefixTable::default();
        for (i, c) in list.iter().enumerate() {
            for n in &c.networks {
                table.insert(*n, i);
            }
        }
        Self {
            list,
            default,
            table,
        }
    }

    /// The index of `ip`'s class: a class of the list, or `list.len()` for the default. Its
    /// cost depends on the prefix lengths in use, not on the number of networks.
    pub(crate) fn of(&self, ip: Option<IpAddr>) -> usize {
        ip.and_then(|ip| self.table.get(ip))
            .unwrap_or(self.list.len())
    }

    /// The class named `name`, or the default if none is (a class a reload removed: its
    /// clients and groups take the default's settings).
    pub(crate) fn named(&self, name: &str) -> &Class {
        self.list
            .iter()
            .find(|c| c.name == name)
            .unwrap_or(&self.default)
    }

    /// The class at `index` (the default past the list).
    pub(crate) fn get(&self, index: usize) -> &Class {
        self.list.get(index).unwrap_or(&self.default)
    }

    /// Every class, in order, then the default.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Class> {
        self.list.iter().chain([&self.default])
    }

    /// The first class with settings that need three levels (class, address, connection).
    pub(crate) fn three_level(&self) -> Option<&Class> {
        self.all().find(|c| c.is_three_level())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::prefixes::parse_net;

    #[test]
    fn the_first_matching_class_wins_and_the_rest_is_default() {
        let class = |name: &str, nets: &[&str]| Class {
            name: name.to_owned(),
            networks: nets.iter().map(|n| parse_net(n).unwrap()).collect(),
            ..Class::default_class()
        };
        let c = Classes::new(
            vec![class("a", &["127.0.0.2"]), class("b", &["127.0.0.0/8"])],
            Class::default_class(),
        );
        assert_eq!(c.of(Some("127.0.0.2".parse().unwrap())), 0);
        assert_eq!(c.of(Some("127.0.0.3".parse().unwrap())), 1);
        assert_eq!(c.of(Some("10.0.0.1".parse().unwrap())), 2);
        assert_eq!(c.of(None), 2);
        assert_eq!(c.get(2).name, "default");
    }
}
