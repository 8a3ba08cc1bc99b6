//! A stand-in for the EC2 instance metadata service on loopback, speaking IMDSv2 as a worker
//! started with `--spot --imds-endpoint` uses it: `PUT /latest/api/token`, then `GET
//! /latest/meta-data/spot/instance-action` with the token (404 until a notice is posted).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

const TOKEN: &str = "imds-session-token";

/// The running service; the thread serving it ends with the test process.
#[derive(Debug, Clone)]
pub struct FakeImds {
    endpoint: String,
    notice: Arc<Mutex<Option<String>>>,
}

impl FakeImds {
    /// Starts serving on a free loopback port.
    pub fn start() -> anyhow::Result<FakeImds> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let endpoint = format!("http://{}", listener.local_addr()?);
        let notice = Arc::new(Mutex::new(None));
        let served = notice.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let notice = served.lock().unwrap_or_else(|p| p.into_inner()).clone();
                let _ = answer(stream, notice.as_deref());
            }
        });
        Ok(FakeImds { endpoint, notice })
    }

    /// The `--imds-endpoint` value.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// From now on, a `terminate` notice for `seconds` from now is served.
    pub fn post_termination_notice(&self, seconds: i64) {
        let time = chrono::Utc::now() + chrono::Duration::seconds(seconds);
        let body = format!(
            r#"{{"action":"terminate","time":"{}"}}"#,
            time.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        *self.notice.lock().unwrap_or_else(|p| p.into_inner()) = Some(body);
    }
}

fn answer(mut stream: TcpStream, notice: Option<&str>) -> std::io::Result<()> {
    let mut buf = [0u8; 8192];
    let n = stream.read(&mut buf)?;
    // Header names are case-insensitive; clients send them in any case.
    let request = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    let (status, body) = if request.starts_with("put /latest/api/token") {
        ("200 OK", TOKEN)
    } else if !request.contains(&format!("x-aws-ec2-metadata-token: {TOKEN}")) {
        ("401 Unauthorized", "")
    } else if !request.starts_with("get /latest/meta-data/spot/instance-action") {
        ("404 Not Found", "")
    } else {
        match notice {
            Some(body) => ("200 OK", body),
            None => ("404 Not Found", ""),
        }
    };
    write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}
