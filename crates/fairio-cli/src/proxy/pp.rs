//! The PROXY protocol (v1 text, v2 binary): the header a trusted load balancer puts before a
//! client's bytes, read with a bounded number of bytes; and the header the proxy puts before
//! its own bytes to an upstream. Parsing and building are `ppp`'s; this module reads exactly
//! the header's bytes off the stream, so that what follows stays the client's.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncReadExt};

/// The longest v1 header (the specification's bound, CRLF included).
const V1_MAX: usize = 107;
/// The most address and TLV bytes a v2 header may carry here: addresses take at most 216
/// (Unix), and load balancers' TLVs (AWS, Azure, GCP) a few hundred more. A header announcing
/// more is refused before any of it is read.
pub(crate) const V2_MAX_PAYLOAD: usize = 2048;

/// Which version to send to an upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Version {
    V1,
    V2,
}

impl Version {
    /// `"v1"` or `"v2"`.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        match s {
            "v1" => Ok(Self::V1),
            "v2" => Ok(Self::V2),
            other => Err(format!("'{other}' is not \"v1\" or \"v2\"")),
        }
    }

    /// `"v1"` or `"v2"`.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

/// Why a connection's header was refused: each is counted in `/metrics` under its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The connection came from outside the trusted networks.
    Untrusted,
    /// The first bytes are no PROXY protocol signature.
    Missing,
    /// A signature, then bytes that are no valid header.
    Malformed,
    /// The stream ended inside the header.
    Truncated,
    /// A v1 line longer than 107 bytes, or a v2 header announcing more than it may carry.
    Oversized,
    /// No whole header within the connect timeout.
    Timeout,
}

impl Refused {
    pub(crate) const ALL: [Self; 6] = [
        Self::Untrusted,
        Self::Missing,
        Self::Malformed,
        Self::Truncated,
        Self::Oversized,
        Self::Timeout,
    ];

    /// The name in `/metrics` and the logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Untrusted => "untrusted",
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Truncated => "truncated",
            Self::Oversized => "oversized",
            Self::Timeout => "timeout",
        }
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a header said: the client's and the destination's addresses, or `None` for a header
/// that carries none (v1 `UNKNOWN`, v2 `LOCAL`, a load balancer's own health check), whose
/// connection is then taken as it is.
pub(crate) type Carried = Option<(SocketAddr, SocketAddr)>;

/// Fills `buf` from `s`: the end of the stream inside it is `Truncated`.
async fn fill<S: AsyncRead + Unpin>(s: &mut S, buf: &mut [u8]) -> Result<(), ReadError> {
    match s.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            Err(ReadError::Refused(Refused::Truncated))
        }
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// A header could not be read: refused, or the stream failed.
#[derive(Debug)]
pub(crate) enum ReadError {
    Refused(Refused),
    Io(io::Error),
}

impl From<Refused> for ReadError {
    fn from(r: Refused) -> Self {
        Self::Refused(r)
    }
}

/// Reads one header, v1 or v2, and not one byte beyond it.
///
/// At most 107 bytes are read for v1 (one at a time: a v1 line's end can only be found by
/// reading it), and 16 + [`V2_MAX_PAYLOAD`] for v2.
///
/// # Errors
/// A [`Refused`] for a header that is missing, malformed, truncated or oversized; the stream's
/// own error otherwise, and `UnexpectedEof` for a stream that ends before its first byte.
///
/// # Cancel safety
/// Not cancel safe: bytes read before a cancellation are lost (the caller closes the
/// connection on a timeout anyway).
pub(crate) async fn read_header<S: AsyncRead + Unpin>(s: &mut S) -> Result<Carried, ReadError> {
    let mut head = [0u8; 16];
    // Five bytes tell the versions apart: "PROXY" or the start of v2's signature. A v1
    // header is at least 15 bytes ("PROXY UNKNOWN\r\n"), so five are always there.
    // A connection closed before its first byte (a load balancer's TCP health check) is no
    // refused header: it is reported as the stream's end.
    let first = s.read(&mut head[..5]).await.map_err(ReadError::Io)?;
    if first == 0 {
        return Err(ReadError::Io(io::ErrorKind::UnexpectedEof.into()));
    }
    fill(s, &mut head[first..5]).await?;
    if &head[..5] == b"PROXY" {
        let mut line = Vec::with_capacity(V1_MAX);
        line.extend_from_slice(&head[..5]);
        while !line.ends_with(b"\r\n") {
            if line.len() == V1_MAX {
                return Err(Refused::Oversized.into());
            }
            let mut b = [0u8; 1];
            fill(s, &mut b).await?;
            line.push(b[0]);
        }
        let h = ppp::v1::Header::try_from(line.as_slice()).map_err(|_| Refused::Malformed)?;
        return Ok(match h.addresses {
            ppp::v1::Addresses::Unknown => None,
            ppp::v1::Addresses::Tcp4(a) => Some((
                SocketAddr::from((a.source_address, a.source_port)),
                SocketAddr::from((a.destination_address, a.destination_port)),
            )),
            ppp::v1::Addresses::Tcp6(a) => Some((
                SocketAddr::from((a.source_address, a.source_port)),
                SocketAddr::from((a.destination_address, a.destination_port)),
            )),
        });
    }
    let signature = ppp::v2::PROTOCOL_PREFIX;
    if head[..5] != signature[..5] {
        return Err(Refused::Missing.into());
    }
    fill(s, &mut head[5..]).await?;
    if head[..signature.len()] != *signature {
        return Err(Refused::Missing.into());
    }
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > V2_MAX_PAYLOAD {
        return Err(Refused::Oversized.into());
    }
    let mut whole = vec![0u8; 16 + len];
    whole[..16].copy_from_slice(&head);
    fill(s, &mut whole[16..]).await?;
    let h = ppp::v2::Header::try_from(whole.as_slice()).map_err(|_| Refused::Malformed)?;
    if h.command == ppp::v2::Command::Local {
        return Ok(None);
    }
    Ok(match h.addresses {
        ppp::v2::Addresses::IPv4(a) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        ppp::v2::Addresses::IPv6(a) => Some((
            SocketAddr::from((a.source_address, a.source_port)),
            SocketAddr::from((a.destination_address, a.destination_port)),
        )),
        // A client without an IP address (a Unix socket, or unspecified) is taken as the
        // connection it came on, as a LOCAL header is.
        ppp::v2::Addresses::Unspecified | ppp::v2::Addresses::Unix(_) => None,
    })
}

/// Two addresses of one family: an IPv4-mapped IPv6 address is taken as IPv4, and a pair
/// still mixed has its IPv4 address mapped into IPv6.
fn one_family(src: SocketAddr, dst: SocketAddr) -> (SocketAddr, SocketAddr) {
    let canon = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (src, dst) = (canon(src), canon(dst));
    let six = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()),
        v6 => v6,
    };
    if src.is_ipv4() == dst.is_ipv4() {
        (src, dst)
    } else {
        (six(src), six(dst))
    }
}

/// The header telling an upstream who the client is: `addrs` is (client, destination), or
/// `None` for a client without an address (a Unix socket): v1 `UNKNOWN`, v2 `LOCAL`.
pub(crate) fn build(version: Version, addrs: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let addrs = addrs.map(|(s, d)| one_family(s, d));
    match version {
        Version::V1 => match addrs {
            Some(pair) => ppp::v1::Addresses::from(pair).to_string().into_bytes(),
            None => ppp::v1::Addresses::Unknown.to_string().into_bytes(),
        },
        Version::V2 => {
            use ppp::v2::{Builder, Command, Protocol, Version as V};
            let built = match addrs {
                Some(pair) => {
                    Builder::with_addresses(V::Two | Command::Proxy, Protocol::Stream, pair).build()
                }
                None => Builder::with_addresses(
                    V::Two | Command::Local,
                    Protocol::Unspecified,
                    ppp::v2::Addresses::Unspecified,
                )
                .build(),
            };
            // Building into a Vec of at most 232 bytes cannot fail.
            built.unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    async fn read_all(bytes: &[u8]) -> (Result<Carried, Refused>, Vec<u8>) {
        let mut r = bytes;
        let got = read_header(&mut r).await.map_err(|e| match e {
            ReadError::Refused(r) => r,
            ReadError::Io(e) if bytes.is_empty() && e.kind() == io::ErrorKind::UnexpectedEof => {
                Refused::Missing
            }
            ReadError::Io(e) => panic!("{e}"),
        });
        (got, r.to_vec())
    }

    #[tokio::test]
    async fn both_versions_round_trip_and_leave_the_payload() {
        let pairs = [
            (sa("203.0.113.7:5123"), sa("127.0.0.1:8080")),
            (sa("[2001:db8::7]:5123"), sa("[::1]:8080")),
        ];
        for v in [Version::V1, Version::V2] {
            for pair in pairs {
                let mut bytes = build(v, Some(pair));
                bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
                let (got, rest) = read_all(&bytes).await;
                assert_eq!(got, Ok(Some(pair)), "{v:?}");
                assert_eq!(rest, b"GET / HTTP/1.1\r\n");
            }
            let (got, rest) = read_all(&build(v, None)).await;
            assert_eq!((got, rest.len()), (Ok(None), 0), "{v:?} without an address");
        }
    }

    #[tokio::test]
    async fn mixed_families_are_sent_as_one() {
        let bytes = build(
            Version::V1,
            Some((sa("10.0.0.1:1"), sa("[::ffff:10.0.0.2]:2"))),
        );
        assert_eq!(bytes, b"PROXY TCP4 10.0.0.1 10.0.0.2 1 2\r\n");
        let bytes = build(Version::V2, Some((sa("10.0.0.1:1"), sa("[2001:db8::1]:2"))));
        let (got, _) = read_all(&bytes).await;
        assert_eq!(
            got,
            Ok(Some((sa("[::ffff:10.0.0.1]:1"), sa("[2001:db8::1]:2"))))
        );
    }

    #[tokio::test]
    async fn bad_headers_are_refused_by_name() {
        let v2 = build(Version::V2, Some((sa("10.0.0.1:1"), sa("10.0.0.2:2"))));
        let mut big = v2[..14].to_vec();
        big.extend_from_slice(&u16::try_from(V2_MAX_PAYLOAD + 1).unwrap().to_be_bytes());
        let mut bad_family = v2.clone();
        bad_family[13] = 0x71;
        let cases: [(&[u8], Refused); 11] = [
            (b"", Refused::Missing),
            (b"GET / HTTP/1.1\r\n\r\n", Refused::Missing),
            (b"\r\n\r\n\0\r\nQUIX\n\x21\x11\0\x0c", Refused::Missing),
            (b"PROXY TCP4 10.0.0.1 10.0.0.2 1\r\n", Refused::Malformed),
            (b"PROXY TCP4 999.0.0.1 10.0.0.2 1 2\r\n", Refused::Malformed),
            (b"PROXY TCP4 10.0.0.1", Refused::Truncated),
            (b"PRO", Refused::Truncated),
            (
                &[b'P', b'R', b'O', b'X', b'Y', b' '].repeat(20),
                Refused::Oversized,
            ),
            (&v2[..20], Refused::Truncated),
            (&big, Refused::Oversized),
            (&bad_family, Refused::Malformed),
        ];
        for (bytes, want) in cases {
            assert_eq!(
                read_all(bytes).await.0,
                Err(want),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(crate::fuzz_cases(256)))]

        /// Any bytes after a v1 signature: a header or a refusal, never a panic, and never
        /// more read than a v1 line holds.
        #[test]
        fn fuzz_any_v1_line_gives_a_header_or_a_refusal(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut input = b"PROXY ".to_vec();
            input.extend_from_slice(&bytes);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (_, rest) = rt.block_on(read_all(&input));
            prop_assert!(input.len() - rest.len() <= V1_MAX);
        }

        /// A v2 header announcing any length, with any bytes: a header or a refusal, and never
        /// more read than 16 bytes and the announced length, nor more than the cap.
        #[test]
        fn fuzz_any_v2_header_gives_a_header_or_a_refusal(
            version_command in any::<u8>(),
            family in any::<u8>(),
            len in any::<u16>(),
            bytes in proptest::collection::vec(any::<u8>(), 0..3000),
        ) {
            let mut input = ppp::v2::PROTOCOL_PREFIX.to_vec();
            input.extend_from_slice(&[version_command, family]);
            input.extend_from_slice(&len.to_be_bytes());
            input.extend_from_slice(&bytes);
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let (got, rest) = rt.block_on(read_all(&input));
            let read = input.len() - rest.len();
            prop_assert!(read <= 16 + usize::from(len).min(V2_MAX_PAYLOAD), "{} read", read);
            if usize::from(len) > V2_MAX_PAYLOAD {
                prop_assert_eq!((got, read), (Err(Refused::Oversized), 16));
            }
        }
    }
}
