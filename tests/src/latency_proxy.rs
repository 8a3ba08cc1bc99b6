//! A TCP proxy that holds every byte for a fixed time in each direction, so that a loopback
//! server answers as if it were across a network with that round-trip time.
//!
//! It stands in for `tc qdisc … netem delay`, which the kernels of these machines do not have
//! (no `sch_netem`). Each direction of a connection has a reader that stamps what it reads with
//! the time it may leave and a writer that sends it at that time, so bytes in flight overlap as
//! on a real link: a request pipelined behind another waits for the delay once, not twice.
//! Bandwidth is not limited; the link is the loopback's.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bytes read at most per chunk.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks held per direction before the reader waits (64 MB per direction at most).
const CHUNKS_IN_FLIGHT: usize = 1024;

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub struct LatencyProxy {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl LatencyProxy {
    /// Listens on `listen` and forwards each connection to `upstream`, delaying each direction by
    /// `one_way` (the round trip grows by twice that).
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        one_way: Duration,
    ) -> io::Result<LatencyProxy> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(accept_loop(listener, upstream, one_way));
        Ok(LatencyProxy { addr, accept })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until the process ends (for the binary).
    pub async fn serve_forever(mut self) {
        let _ = (&mut self.accept).await;
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, one_way: Duration) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a connection failed");
                continue;
            }
        };
        tokio::spawn(async move {
            if let Err(e) = relay(client, upstream, one_way).await {
                tracing::debug!(error = %e, "proxied connection ended with an error");
            }
        });
    }
}

/// One client connection: connect upstream (the handshake pays the round trip too), then both
/// directions until each has ended.
async fn relay(client: TcpStream, upstream: SocketAddr, one_way: Duration) -> io::Result<()> {
    tokio::time::sleep(one_way).await;
    let server = TcpStream::connect(upstream).await?;
    tokio::time::sleep(one_way).await;
    // Nagle's algorithm would hold small writes back on top of the delay we add.
    client.set_nodelay(true)?;
    server.set_nodelay(true)?;
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::try_join!(
        delayed_copy(client_read, server_write, one_way),
        delayed_copy(server_read, client_write, one_way),
    )?;
    Ok(())
}

/// Copies one direction, each chunk leaving `delay` after it arrived; the end of the stream is
/// passed on (as a write shutdown) with the same delay.
async fn delayed_copy(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    delay: Duration,
) -> io::Result<()> {
    let (tx, mut rx) = mpsc::channel::<(Instant, Option<Bytes>)>(CHUNKS_IN_FLIGHT);
    let read = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = from.read(&mut buf).await?;
            let due = Instant::now() + delay;
            let chunk = (n > 0).then(|| Bytes::copy_from_slice(&buf[..n]));
            let end = chunk.is_none();
            // The writer is gone only when the other side failed; that error is reported there.
            if tx.send((due, chunk)).await.is_err() || end {
                return Ok::<_, io::Error>(());
            }
        }
    };
    let write = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            match chunk {
                Some(bytes) => to.write_all(&bytes).await?,
                None => {
                    to.shutdown().await?;
                    break;
                }
            }
        }
        Ok::<_, io::Error>(())
    };
    tokio::try_join!(read, write)?;
    Ok(())
}
