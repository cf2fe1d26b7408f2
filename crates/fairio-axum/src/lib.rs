//! Fair bandwidth for axum and hyper servers, in one line.
//!
//! [`FairListener`] wraps a [`tokio::net::TcpListener`] (or a Unix listener) and registers
//! every accepted stream with a [`fairio::Scheduler`]. By default the connections of one client
//! address share one group, so a client that opens eight connections gets as much as one that
//! opens one. Give it to `axum::serve` and the server's upload and download limits are shared
//! fairly between clients:
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use fairio::{Config, Scheduler};
//! use fairio_axum::FairListener;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sched = Scheduler::new(Config::new(64 * 1024).max_upload_speed(Some(100 << 20)))?;
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let listener = tokio::net::TcpListener::bind("0.0.0.0:3000").await?;
//! axum::serve(FairListener::new(listener, &sched), app).await?;
//! # Ok(())
//! # }
//! ```
//!
//! For hyper's own server loop, accept from the same listener ([`FairListener::accept_io`])
//! and hand the connection to hyper through `hyper_util::rt::TokioIo`:
//!
//! ```no_run
//! # use fairio::{Config, Scheduler};
//! # use fairio_axum::FairListener;
//! # async fn serve(sched: Scheduler) -> std::io::Result<()> {
//! let mut listener = FairListener::new(tokio::net::TcpListener::bind("0.0.0.0:3000").await?, &sched);
//! loop {
//!     let (io, _peer) = listener.accept_io().await;
//!     let io = hyper_util::rt::TokioIo::new(io);
//!     tokio::spawn(async move {
//!         let service = hyper::service::service_fn(|_req| async {
//!             Ok::<_, std::convert::Infallible>(hyper::Response::new(String::from("hello")))
//!         });
//!         let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
//!     });
//! }
//! # }
//! ```
//!
//! A connection's bytes are counted and shared where they enter and leave the socket, under
//! whatever HTTP does on top: keep-alive connections, pipelining and large bodies all count.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod listener;

pub use listener::FairListener;
