//! The copying steps of a [`Splice`](super::Splice): where no pipe can be used, and for the
//! bytes a registered source had queued before the splice began.

#[cfg(not(loom))]
use bytes::Buf;
use bytes::Bytes;
use fairio_policy::Policy;

use super::End;
use crate::Error;

/// The most bytes read at a time.
pub(super) const CHUNK: usize = 64 * 1024;

/// Reads the next bytes of `from`: empty once it has ended.
pub(super) async fn read<P: Policy>(from: &End<'_, P>) -> Result<Bytes, Error> {
    match from {
        End::Connection(c) => match c.read_bytes(CHUNK).await {
            Err(Error::ConnectionClosed) => Ok(Bytes::new()),
            r => r,
        },
        #[cfg(not(loom))]
        End::Tcp(t) => read_tcp(t).await,
    }
}

/// Reads the next bytes of a TCP stream: empty once it has ended.
#[cfg(not(loom))]
pub(super) async fn read_tcp(t: &tokio::net::TcpStream) -> Result<Bytes, Error> {
    let mut buf = bytes::BytesMut::with_capacity(CHUNK);
    // Bounded: each turn waits for readiness, which a `WouldBlock` has cleared.
    loop {
        t.readable().await?;
        match t.try_read_buf(&mut buf) {
            // A small read is copied out, so that what it hands on (into a write queue, whose
            // bound counts bytes) does not hold the whole buffer.
            Ok(n) if n < CHUNK / 2 => return Ok(Bytes::copy_from_slice(&buf)),
            Ok(_) => return Ok(buf.freeze()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes `b` to `to`, taking off its front what was written, so that a dropped call leaves
/// exactly the rest: into a registered connection's write queue (whole, or not at all), or
/// to a TCP stream.
pub(super) async fn write<P: Policy>(to: &End<'_, P>, b: &mut Bytes) -> Result<(), Error> {
    match to {
        End::Connection(c) => {
            c.write(b.clone()).await?;
            b.clear();
        }
        #[cfg(not(loom))]
        End::Tcp(t) => {
            while !b.is_empty() {
                t.writable().await?;
                match t.try_write(b) {
                    Ok(n) => b.advance(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(())
}
