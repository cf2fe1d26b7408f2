//! Fair bandwidth across QUIC connections and their streams, with [quinn].
//!
//! [`FairEndpoint`] takes the connections of a quinn `Endpoint` (accepted or dialled) and
//! registers every stream opened or accepted on them with one [`fairio::Scheduler`]. Streams
//! are grouped by the connection's remote address by default ([`Grouping::Address`]), so a
//! peer that opens four connections with a hundred streams gets what a peer with one stream
//! gets; [`Grouping::Connection`] gives each QUIC connection its own part instead. Within a
//! group, the streams share its part by the scheduler's policy.
//!
//! ```
//! use std::sync::Arc;
//! use fairio::{Config, Scheduler};
//! use fairio_quinn::FairEndpoint;
//! use quinn::rustls::pki_types::{CertificateDer, PrivatePkcs8KeyDer};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A self-signed certificate, for the example.
//! let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()])?;
//! let der = CertificateDer::from(cert.cert);
//! let key = PrivatePkcs8KeyDer::from(cert.key_pair.serialize_der());
//!
//! // The server: every stream it serves shares 8 MiB/s, fairly by client address.
//! let sched = Scheduler::new(Config::new(64 * 1024).max_upload_speed(Some(8 << 20)))?;
//! let fair = FairEndpoint::new(&sched);
//! let server_config = quinn::ServerConfig::with_single_cert(vec![der.clone()], key.into())?;
//! let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse()?)?;
//! let addr = server.local_addr()?;
//! tokio::spawn(async move {
//!     while let Some(incoming) = server.accept().await {
//!         let fair = fair.clone();
//!         tokio::spawn(async move {
//!             let conn = fair.connection(incoming.await?);
//!             let stream = conn.accept_bi().await?;
//!             stream.write(bytes::Bytes::from_static(b"hello, fairly")).await?;
//!             // Over once the client has acknowledged every byte: dropping the connection
//!             // next cuts nothing.
//!             stream.close(None).await?;
//!             Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
//!         });
//!     }
//! });
//!
//! // A client (plain quinn here; it could go through a scheduler of its own).
//! let mut roots = quinn::rustls::RootCertStore::empty();
//! roots.add(der)?;
//! let mut client = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
//! client.set_default_client_config(quinn::ClientConfig::with_root_certificates(Arc::new(roots))?);
//! let conn = client.connect(addr, "localhost")?.await?;
//! let (mut send, mut recv) = conn.open_bi().await?;
//! send.write_all(b"hi").await?; // a stream is announced by its first bytes
//! let reply = recv.read_to_end(1024).await?;
//! assert_eq!(reply, b"hello, fairly");
//! # Ok(())
//! # }
//! ```
//!
//! # What is counted
//!
//! Stream payload bytes: what the application writes to and reads from its streams. QUIC's
//! own overhead (packet headers, acknowledgements, retransmissions, the handshake) and
//! unreliable datagrams are not counted, so the UDP traffic on the wire is somewhat above
//! the limits.
//!
//! # Flow control and congestion control
//!
//! The scheduler decides how many payload bytes each stream may move per second; quinn then
//! sends them as QUIC's flow control (the peer's stream and connection windows) and congestion
//! control allow. Neither can make a stream go faster than its part, only slower: a stream
//! held back by a slow peer leaves its part to the others, as a slow TCP peer does. What a
//! stream has written and quinn has not sent yet sits in quinn's send buffer, bounded by
//! `TransportConfig::send_window` (the counterpart of a TCP socket's buffer); a smaller window
//! makes the sharing follow slow peers sooner. [`transport_config`] gives one of 1 MiB.
//!
//! # Resets and closes
//!
//! A stream the peer resets (`RESET_STREAM`) makes reads fail with
//! [`std::io::ErrorKind::ConnectionReset`]; one the peer stops (`STOP_SENDING`) makes writes
//! (and a close waiting for acknowledgements) fail likewise. A connection closed or lost
//! mid-transfer makes every stream's reads and writes fail with the reason the connection gives
//! ([`quinn::ConnectionError`] as an I/O error: `ConnectionAborted` for a close by the peer's
//! application, `TimedOut` for an idle timeout, `ConnectionReset` for a reset). In every case
//! the fairio handle reports the error and the stream leaves the scheduler; nothing waits for
//! bytes that will not come.
//!
//! A stream's `close` is over once the peer has acknowledged every byte (quinn's `finish`
//! alone returns at once): a server may drop its connection handle after closing its streams
//! without cutting their end.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod connection;
mod endpoint;
mod halves;

pub use connection::{FairConnection, FairStream};
pub use endpoint::{FairEndpoint, Grouping, transport_config};
