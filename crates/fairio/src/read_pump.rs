//! The read pump: moves bytes from a connection's stream into its read queue, as the download
//! direction's grants allow.
//!
//! A byte counts as received when it enters the read queue. Under a limit, the pump reads ahead
//! of its grants into a small stage, and asks for exactly what is staged: its demand is what it
//! could deliver now, so it is never granted bytes it cannot move, and a connection whose share
//! per round is larger than one read buffer still holds its place (it reads again while it
//! waits). The stage and the read queue together hold at most [`ahead`] bytes, so a user who
//! reads slowly makes a slow connection, whose share goes to the others.

use std::collections::VecDeque;
use std::io;
use std::num::NonZeroUsize;
use std::pin::pin;

use bytes::{BufMut, Bytes, BytesMut};
use fairio_fd::{CloseReason, FdReadHalf};
use fairio_policy::Policy;
use fairio_policy::tuning::MAX_GRANT;
use tokio::io::AsyncReadExt;

use crate::conn::ConnInner;
use crate::direction::Direction;
use crate::grant::Grant;

/// How many bytes the stage and the read queue may hold together under a limit: the queue's
/// bound, and at least one read buffer; with an unbounded queue, two of the largest grants.
fn ahead(bound: Option<NonZeroUsize>, rbs: usize) -> usize {
    let grants = usize::try_from(2 * MAX_GRANT).unwrap_or(usize::MAX);
    bound.map_or(grants, NonZeroUsize::get).max(rbs)
}

/// Bytes read from the stream and not yet granted, in order.
#[derive(Debug, Default)]
struct Stage {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Stage {
    fn push(&mut self, chunk: Bytes) {
        self.len += chunk.len();
        self.chunks.push_back(chunk);
    }

    /// Takes up to `max` bytes from the front.
    fn take(&mut self, max: usize) -> Option<Bytes> {
        let front = self.chunks.front_mut()?;
        let out = if front.len() <= max {
            self.chunks.pop_front()?
        } else {
            front.split_to(max)
        };
        self.len -= out.len();
        Some(out)
    }
}

/// Runs until the stream ends or fails, or the read queue is closed.
pub(crate) async fn run<P: Policy>(
    conn: &ConnInner<P>,
    dir: &Direction<P>,
    mut r: FdReadHalf,
    rbs: NonZeroUsize,
) {
    let (key, slot) = (conn.down.0, &*conn.down.1);
    // However the pump ends, its demand goes with it.
    let _asking = dir.asking(key, slot);
    let rbs = rbs.get();
    let ahead = ahead(conn.read_q.bound(), rbs);
    let mut stage = Stage::default();
    let mut buf = BytesMut::new();
    let mut end = End::Open;
    // Whether the arbiter may hold a demand of ours.
    let mut asked = false;
    loop {
        let generation = dir.generation();
        if !dir.is_limited() {
            // What was staged under a limit since lifted moves now.
            while let Some(chunk) = stage.take(usize::MAX) {
                if !deliver(conn, chunk) {
                    return;
                }
            }
            if end.is_reached() {
                break;
            }
            // Read ahead by less than one buffer: what the user has not taken yet waits in the
            // socket, not in memory here. Reading ahead as far as the read queue allowed cost
            // a second pass over cold memory for every byte (0.5x raw tokio's download
            // throughput at 64 connections); now the buffer is reused while still in cache.
            if !conn.read_q.wait_below(rbs).await {
                return;
            }
            if let Some(chunk) = end.note(read(&mut r, &mut buf, rbs).await) {
                if dir.generation() != generation {
                    // A limit came while reading: the chunk waits for grants.
                    stage.push(chunk);
                } else if !deliver(conn, chunk) {
                    return;
                }
            }
            continue;
        }
        // Deliver what the slot holds, then ask for the rest of the stage.
        let grant = Grant::take(dir, key, slot);
        if !deliver_granted(conn, &mut stage, grant) {
            return;
        }
        if end.is_reached() && stage.len == 0 {
            break;
        }
        if stage.len > 0 {
            dir.request(key, stage.len as u64, generation);
            asked = true;
        } else if asked {
            // Nothing left to deliver: no demand, and a grant that came meanwhile goes back.
            dir.withdraw(key, slot);
            asked = false;
        }
        let room = ahead.saturating_sub(stage.len + conn.read_q.len_bytes());
        let changed = pin!(dir.changed());
        if dir.generation() != generation {
            continue;
        }
        tokio::select! {
            biased;
            () = changed => {}
            () = slot.notified(), if stage.len > 0 => {}
            r = read(&mut r, &mut buf, room.min(rbs)), if room > 0 && !end.is_reached() => {
                if let Some(chunk) = end.note(r) {
                    stage.push(chunk);
                }
            }
            open = conn.read_q.wait_below(ahead - stage.len), if room == 0 && stage.len == 0 => {
                if !open {
                    return;
                }
            }
        }
    }
    match end {
        End::Failed(e) => conn.fail(e),
        End::Open | End::Eof => {
            conn.info.set_close_reason(CloseReason::PeerClosed);
            conn.read_q.close();
        }
    }
}

/// How the stream's read side stands. A read error waits, like the end of the stream, until
/// the bytes staged before it have been delivered.
#[derive(Debug)]
enum End {
    Open,
    Eof,
    Failed(io::Error),
}

impl End {
    fn is_reached(&self) -> bool {
        !matches!(self, Self::Open)
    }

    /// Records what a read returned; gives back the chunk it read, if any.
    fn note(&mut self, r: io::Result<Option<Bytes>>) -> Option<Bytes> {
        match r {
            Ok(Some(chunk)) => Some(chunk),
            Ok(None) => {
                *self = Self::Eof;
                None
            }
            Err(e) => {
                *self = Self::Failed(e);
                None
            }
        }
    }
}

/// Reads at most `max` bytes (`max` > 0). `None` at the end of the stream.
///
/// Cancel-safe: a read that has not completed has taken nothing from the stream.
async fn read(r: &mut FdReadHalf, buf: &mut BytesMut, max: usize) -> io::Result<Option<Bytes>> {
    // Reuses the allocation once the previous chunk has been read by the user.
    buf.reserve(max);
    match r.read_buf(&mut (&mut *buf).limit(max)).await? {
        0 => Ok(None),
        _ => Ok(Some(buf.split().freeze())),
    }
}

/// Moves as much of the stage as `grant` allows into the read queue. The grant's rest goes
/// back when it is dropped. Returns `false` once the read queue is closed.
fn deliver_granted<P: Policy>(
    conn: &ConnInner<P>,
    stage: &mut Stage,
    mut grant: Grant<'_, P>,
) -> bool {
    while let Some(chunk) = stage.take(usize::try_from(grant.bytes()).unwrap_or(usize::MAX)) {
        if chunk.is_empty() {
            break;
        }
        grant.spend(chunk.len() as u64);
        if !deliver(conn, chunk) {
            return false;
        }
    }
    true
}

/// Puts a chunk in the read queue; the pump applies back-pressure itself, so this never waits.
fn deliver<P: Policy>(conn: &ConnInner<P>, chunk: Bytes) -> bool {
    let n = chunk.len() as u64;
    if conn.read_q.push_force(chunk).is_err() {
        return false;
    }
    conn.meter.add_recv(n);
    true
}
