//! The latency proxy of the S3 benchmark: bytes pass unchanged, each round trip pays the delay,
//! and bytes in flight overlap instead of queueing behind each other's delay.
#![allow(clippy::unwrap_used)] // tests may unwrap

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use earthcatalog_tests::latency_proxy::LatencyProxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ONE_WAY: Duration = Duration::from_millis(200);

/// An echo server: each connection's bytes are sent back until the client ends its side.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut read, mut write) = socket.into_split();
                tokio::io::copy(&mut read, &mut write).await.unwrap();
                write.shutdown().await.unwrap();
            });
        }
    });
    addr
}

async fn proxy_to_echo() -> LatencyProxy {
    let upstream = echo_server().await;
    LatencyProxy::start("127.0.0.1:0".parse().unwrap(), upstream, ONE_WAY).await.unwrap()
}

#[tokio::test]
async fn bytes_come_back_unchanged_after_at_least_one_round_trip() {
    let proxy = proxy_to_echo().await;
    let payload: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();

    let mut socket = TcpStream::connect(proxy.addr()).await.unwrap();
    let sent = Instant::now();
    let (mut read, mut write) = socket.split();
    let send = async {
        write.write_all(&payload).await.unwrap();
        write.shutdown().await.unwrap();
    };
    let mut echoed = Vec::new();
    let receive = async { read.read_to_end(&mut echoed).await.unwrap() };
    tokio::join!(send, receive);
    let elapsed = sent.elapsed();

    assert_eq!(echoed.len(), payload.len());
    assert!(echoed == payload, "the echoed bytes differ from those sent");
    // The connection's handshake and the data each cross the proxy both ways.
    assert!(elapsed >= 4 * ONE_WAY, "a connection and a round trip took only {elapsed:?}");
}

#[tokio::test]
async fn messages_sent_back_to_back_overlap_in_flight() {
    let proxy = proxy_to_echo().await;
    let mut socket = TcpStream::connect(proxy.addr()).await.unwrap();
    // The first message pays the connection's set-up; the next ones are timed.
    socket.write_all(b"warm").await.unwrap();
    let mut buf = [0u8; 4];
    socket.read_exact(&mut buf).await.unwrap();

    let messages = 20;
    let started = Instant::now();
    for i in 0..messages {
        socket.write_all(format!("m{i:03}").as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut echoed = vec![0u8; 4 * messages];
    socket.read_exact(&mut echoed).await.unwrap();
    let elapsed = started.elapsed();

    let expected: String = (0..messages).map(|i| format!("m{i:03}")).collect();
    assert_eq!(String::from_utf8(echoed).unwrap(), expected);
    assert!(elapsed >= 2 * ONE_WAY, "the round trip took only {elapsed:?}");
    // Queued one behind another they would take 20 round trips (8 s); in flight together, one
    // round trip and the 100 ms spent sending.
    assert!(
        elapsed < 10 * ONE_WAY,
        "20 back-to-back messages took {elapsed:?}: the delays were queued, not overlapped"
    );
}
