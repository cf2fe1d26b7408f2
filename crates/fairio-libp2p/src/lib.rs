//! Fair bandwidth for libp2p nodes: [`FairTransport`] wraps a transport whose raw connections
//! are tokio TCP streams (libp2p's `tcp::tokio::Transport`) and registers every connection with
//! a [`fairio::Scheduler`] *before* the security and muxer upgrades, grouped by remote IP. Every
//! substream of a peer then shares that peer's part of the node-wide limits, however many
//! connections and streams it opens, and the limits count every byte on the wire (handshakes,
//! muxer frames and all).
//!
//! ```no_run
//! use libp2p::core::upgrade::Version;
//! use libp2p::{Transport, noise, tcp, yamux};
//! use fairio::{Config, Scheduler};
//! use fairio_libp2p::FairTransport;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sched = Scheduler::new(Config::new(64 * 1024).max_upload_speed(Some(10 << 20)))?;
//! let swarm = libp2p::SwarmBuilder::with_new_identity()
//!     .with_tokio()
//!     .with_other_transport(|key| {
//!         let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
//!         Ok::<_, Box<dyn std::error::Error + Send + Sync>>(FairTransport::new(tcp, &sched)
//!             .upgrade(Version::V1)
//!             .authenticate(noise::Config::new(key)?)
//!             .multiplex(yamux::Config::default()))
//!     })?
//!     .with_behaviour(|_| libp2p::swarm::dummy::Behaviour)?
//!     .build();
//! # drop(swarm);
//! # Ok(())
//! # }
//! ```
//!
//! QUIC has no raw connection to register: a QUIC connection is datagrams over one UDP socket,
//! authenticated and multiplexed by the transport itself. [`FairMuxerTransport`] wraps such a
//! transport (libp2p's `quic::tokio::Transport`) and registers each connection's substreams
//! instead, grouped by remote peer; there the limits count the substreams' payload.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod muxer;
mod transport;

pub use muxer::{FairMuxer, FairMuxerTransport, FairSubstream, Muxing};
pub use transport::{FairIo, FairTransport, Registering};
