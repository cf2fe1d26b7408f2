//! Fair bandwidth for hyper clients: [`FairConnector`] is a connector (a tower
//! `Service<Uri>`, as hyper-util's `HttpConnector` is) whose connections all go through one
//! [`fairio::Scheduler`]. A client's pool then shares one download (and upload) limit fairly
//! across its connections, however many it opens.
//!
//! ```no_run
//! use fairio::{Config, Scheduler};
//! use fairio_hyper::FairConnector;
//! use hyper_util::client::legacy::Client;
//! use hyper_util::rt::TokioExecutor;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sched = Scheduler::new(Config::new(64 * 1024).max_download_speed(Some(10 << 20)))?;
//! let client: Client<_, http_body_util::Empty<bytes::Bytes>> =
//!     Client::builder(TokioExecutor::new()).build(FairConnector::new(&sched));
//! let response = client.get("http://example.com/".parse()?).await?;
//! println!("{}", response.status());
//! # Ok(())
//! # }
//! ```
//!
//! reqwest builds its own connector and takes none from outside; with reqwest, wrap the
//! streams you make yourself, or use hyper's client as above.
#![forbid(unsafe_code)]
#![warn(missing_docs, missing_debug_implementations)]

mod connector;
mod stream;

pub use connector::FairConnector;
pub use stream::{FairInfo, FairStream};
