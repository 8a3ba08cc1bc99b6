//! `latency-proxy`: forwards TCP connections to a server with a fixed delay each way, so that a
//! loopback S3 server answers at a real network's round-trip time (`scripts/bench-s3-latency.sh`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use earthcatalog_tests::latency_proxy::LatencyProxy;

/// Forward TCP connections to a server with a fixed delay each way.
#[derive(Debug, Parser)]
#[command(name = "latency-proxy")]
struct Cli {
    /// Address to listen on.
    #[arg(long, env = "LATENCY_PROXY_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The server connections are forwarded to.
    #[arg(long, env = "LATENCY_PROXY_UPSTREAM")]
    upstream: SocketAddr,
    /// Round-trip time added, in milliseconds (half of it each way).
    #[arg(long, env = "LATENCY_PROXY_RTT_MS", default_value_t = 30)]
    rtt_ms: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    earthcatalog_common::logging::init("text");
    let one_way = Duration::from_micros(cli.rtt_ms * 500);
    match LatencyProxy::start(cli.listen, cli.upstream, one_way).await {
        Ok(proxy) => {
            // The bound address on stdout, so that a script can start it on port 0.
            println!("{}", proxy.addr());
            proxy.serve_forever().await;
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: listening on {}: {e}", cli.listen);
            ExitCode::FAILURE
        }
    }
}
