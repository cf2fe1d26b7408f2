//! [`FairConnector`]: hyper-util's `HttpConnector`, with every connection registered with a
//! scheduler.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use fairio::{EqualShare, Policy, Scheduler};
use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::{FairInfo, FairStream};

/// A connector for hyper-util's client whose connections all go through one scheduler: plain
/// TCP (`http://`) by hyper-util's [`HttpConnector`], then registered.
///
/// # Errors
/// A connection fails as `HttpConnector`'s do, or with [`fairio::Error::SchedulerClosed`]
/// once the scheduler has shut down.
#[derive(Clone, Debug)]
pub struct FairConnector<P: Policy = EqualShare> {
    http: HttpConnector,
    sched: Scheduler<P>,
}

impl<P: Policy> FairConnector<P> {
    /// A connector over a default `HttpConnector` (`TCP_NODELAY` on).
    pub fn new(sched: &Scheduler<P>) -> Self {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        Self::with_http(http, sched)
    }

    /// A connector over `http`, configured as you need (local address, timeouts, keep-alive).
    pub fn with_http(http: HttpConnector, sched: &Scheduler<P>) -> Self {
        Self {
            http,
            sched: sched.clone(),
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

impl<P: Policy> tower_service::Service<Uri> for FairConnector<P> {
    type Response = FairStream<P>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<FairStream<P>, Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.http.call(uri);
        let sched = self.sched.clone();
        Box::pin(async move {
            let tcp = connecting.await?.into_inner();
            let (remote_addr, local_addr) = (tcp.peer_addr().ok(), tcp.local_addr().ok());
            let conn = sched.register(tcp)?;
            let info = FairInfo {
                remote_addr,
                local_addr,
                connection: conn.id(),
            };
            Ok(FairStream::new(conn.into_io(), info))
        })
    }
}
