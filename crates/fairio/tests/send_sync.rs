//! Compile-time checks: the public types are `Send + Sync`, and the futures of their methods
//! can be spawned from generic code over any policy.

use std::future::Future;

use bytes::Bytes;
use fairio::{Config, Connection, ConnectionIo, Error, Policy, Scheduler, Stat};

fn send_sync<T: Send + Sync>() {}
fn send<T: Send>() {}
fn spawnable<F: Future + Send + 'static>(_: F) {}

#[allow(dead_code, clippy::let_underscore_future)]
fn futures_are_spawnable<P: Policy>(sched: Scheduler<P>, conn: Connection<P>) {
    let c = conn.clone();
    spawnable(async move { c.write(Bytes::new()).await });
    let c = conn.clone();
    spawnable(async move {
        let mut buf = [0u8; 4];
        c.read(&mut buf).await?;
        c.read_full(&mut buf).await
    });
    let c = conn.clone();
    spawnable(async move { c.close(None).await });
    let s = sched.clone();
    spawnable(async move { s.shutdown(None).await });
}

#[test]
fn public_types_are_send_and_sync() {
    send_sync::<Scheduler>();
    send_sync::<Scheduler<fairio::Weighted>>();
    send_sync::<Scheduler<fairio::WindowQuota>>();
    send_sync::<Connection>();
    send_sync::<Connection<fairio::Weighted>>();
    send_sync::<Stat>();
    send_sync::<Config>();
    send_sync::<Error>();
    send::<ConnectionIo>();
}
