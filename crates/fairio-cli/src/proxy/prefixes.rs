//! Networks to values by prefix table: a lookup costs one hash probe per prefix length in use,
//! whatever the number of networks.

use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;

/// Parses a network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`) or one address. Bits
/// beyond the prefix are ignored (`10.1.2.3/8` is `10.0.0.0/8`), and an IPv4-mapped IPv6
/// network (`::ffff:10.0.0.0/104`) is the IPv4 network it maps.
///
/// # Errors
/// What is wrong, with examples of what is right.
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    let help = "expected a network such as 10.0.0.0/8, 192.168.1.7 or 2001:db8::/32";
    let s = s.trim();
    let net = match s.parse::<IpNet>() {
        Ok(n) => n,
        Err(_) => match s.parse::<IpAddr>() {
            Ok(a) => IpNet::from(a),
            Err(_)
                if s.contains('/')
                    && s.split('/')
                        .next()
                        .is_some_and(|a| a.parse::<IpAddr>().is_ok()) =>
            {
                let max = if s.contains(':') { 128 } else { 32 };
                return Err(format!(
                    "'{s}' has a bad prefix length (0 to {max}); {help}"
                ));
            }
            Err(_) => return Err(format!("'{s}' is not a network; {help}")),
        },
    };
    Ok(canonical(net).trunc())
}

/// An IPv4-mapped IPv6 network as the IPv4 network it maps; any other unchanged.
fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// An address as 128 bits and its family's width (32 or 128); IPv4-mapped IPv6 counts as IPv4.
fn bits(ip: IpAddr) -> (u128, u8) {
    match ip.to_canonical() {
        IpAddr::V4(v) => (u128::from(u32::from(v)), 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

/// The first `len` bits of `addr`, a `width`-bit address.
fn masked(addr: u128, width: u8, len: u8) -> u128 {
    if len == 0 { 0 } else { addr >> (width - len) }
}

/// Networks, each with a value; an address's value is the least among the networks holding it.
///
/// With values as class indices, "the least" is "the first class in the file": the order of
/// classes decides between overlapping networks, as a scan in order would.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct PrefixTable<T> {
    /// (family width, prefix length, first bits) to value.
    map: HashMap<(u8, u8, u128), T>,
    /// The (family width, prefix length) pairs in use, each once.
    lengths: Vec<(u8, u8)>,
}

impl<T: Copy + Ord> PrefixTable<T> {
    /// Adds `net` with `value`; a network already present keeps the lesser value.
    pub(crate) fn insert(&mut self, net: IpNet, value: T) {
        let net = canonical(net);
        let (addr, width) = bits(net.network());
        let len = net.prefix_len();
        let slot = self
            .map
            .entry((width, len, masked(addr, width, len)))
            .or_insert(value);
        *slot = (*slot).min(value);
        if !self.lengths.contains(&(width, len)) {
            self.lengths.push((width, len));
        }
    }

    /// The least value among the networks holding `ip`.
    pub(crate) fn get(&self, ip: IpAddr) -> Option<T> {
        self.probes(ip).0
    }

    /// The value, and how many hash probes finding it took (what the tests count).
    fn probes(&self, ip: IpAddr) -> (Option<T>, usize) {
        let (addr, width) = bits(ip);
        let mut best = None;
        let mut probes = 0;
        for &(w, len) in &self.lengths {
            if w != width {
                continue;
            }
            probes += 1;
            if let Some(&v) = self.map.get(&(w, len, masked(addr, w, len))) {
                best = Some(best.map_or(v, |b: T| b.min(v)));
            }
        }
        (best, probes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_hold_what_their_prefix_says() {
        let mut t = PrefixTable::default();
        t.insert(parse_net("10.1.0.0/16").unwrap(), 0);
        t.insert(parse_net("127.0.0.2").unwrap(), 1);
        assert_eq!(t.get(ip("10.1.200.3")), Some(0));
        assert_eq!(t.get(ip("10.2.0.1")), None);
        assert_eq!(t.get(ip("::ffff:10.1.0.9")), Some(0), "IPv4-mapped");
        assert_eq!(t.get(ip("127.0.0.2")), Some(1));
        assert_eq!(t.get(ip("127.0.0.3")), None);
        let mut all4 = PrefixTable::default();
        all4.insert(parse_net("0.0.0.0/0").unwrap(), 0);
        assert_eq!(all4.get(ip("8.8.8.8")), Some(0));
        assert_eq!(all4.get(ip("2001:db8::1")), None, "IPv4's /0 holds no IPv6");
        let mut all6 = PrefixTable::default();
        all6.insert(parse_net("::/0").unwrap(), 0);
        assert_eq!(all6.get(ip("8.8.8.8")), None, "IPv6's /0 holds no IPv4");
        let mut mapped = PrefixTable::default();
        mapped.insert(parse_net("::ffff:192.168.0.0/112").unwrap(), 0);
        assert_eq!(mapped.get(ip("192.168.3.4")), Some(0));
    }

    #[test]
    fn bad_networks_are_refused_with_an_example() {
        for bad in [
            "10.0.0.0/33",
            "nope",
            "1.2.3/8",
            "::1/129",
            "",
            "10.0.0.0/-1",
        ] {
            assert!(parse_net(bad).unwrap_err().contains("10.0.0.0/8"), "{bad}");
        }
        assert!(
            parse_net("10.0.0.0/33")
                .unwrap_err()
                .contains("prefix length")
        );
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    }

    #[test]
    fn a_lookup_costs_one_probe_per_length_not_per_network() {
        let mut few = PrefixTable::default();
        let mut many = PrefixTable::default();
        for i in 0..10_000u32 {
            let net = ipnet::Ipv4Net::new((0x0a00_0000 | (i << 8)).into(), 24).unwrap();
            many.insert(IpNet::V4(net), i);
            if i < 10 {
                few.insert(IpNet::V4(net), i);
            }
        }
        assert_eq!(many.probes(ip("10.0.9.1")), (Some(9), 1));
        assert_eq!(few.probes(ip("10.0.9.1")), (Some(9), 1));
        assert_eq!(many.probes(ip("10.39.15.1")), (Some(9999), 1));
        assert_eq!(many.probes(ip("11.0.0.1")), (None, 1));
    }

    fn any_net() -> impl Strategy<Value = IpNet> {
        prop_oneof![
            (any::<u32>(), 0u8..=32)
                .prop_map(|(a, l)| IpNet::V4(ipnet::Ipv4Net::new(a.into(), l).unwrap())),
            (any::<u128>(), 0u8..=128)
                .prop_map(|(a, l)| IpNet::V6(ipnet::Ipv6Net::new(a.into(), l).unwrap())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::fuzz_cases(256)))]

        /// The table answers what a scan of the networks in order answers.
        #[test]
        fn fuzz_the_table_agrees_with_a_scan_in_order(
            nets in proptest::collection::vec(any_net(), 0..40),
            probes in proptest::collection::vec(any_net(), 1..20),
        ) {
            let mut t = PrefixTable::default();
            for (i, n) in nets.iter().enumerate() {
                t.insert(*n, i);
            }
            // Addresses inside the networks, and anywhere.
            for addr in probes.iter().map(IpNet::addr).chain(nets.iter().map(IpNet::addr)) {
                let scan = nets.iter().position(|n| canonical(*n).contains(&addr.to_canonical()));
                prop_assert_eq!(t.get(addr), scan, "{}", addr);
            }
        }
    }
}
