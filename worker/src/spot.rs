//! EC2 spot interruption notices, read from the instance metadata service with IMDSv2 (a
//! session token from `PUT /latest/api/token`, then `GET
//! /latest/meta-data/spot/instance-action`: 404 until a notice, then `{"action", "time"}`).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::shutdown::Shutdown;

/// AWS documents checking the notice every 5 seconds.
pub const POLL_EVERY: Duration = Duration::from_secs(5);
/// A notice gives two minutes; keep this much for handing leases back and exiting.
const EXIT_MARGIN: Duration = Duration::from_secs(15);
/// One metadata request may take this long.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the metadata service could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum SpotError {
    /// The endpoint is not `http://host:port`.
    #[error("metadata endpoint '{0}' must be http://host[:port]")]
    Endpoint(String),
    /// The request failed.
    #[error("metadata request {path}: {reason}")]
    Request {
        /// The path asked for.
        path: String,
        /// What failed.
        reason: String,
    },
}

/// An interruption notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// `terminate`, `stop` or `hibernate`.
    pub action: String,
    /// When it happens.
    pub time: DateTime<Utc>,
}

/// A client of the instance metadata service at one endpoint, made once per watcher.
#[derive(Debug, Clone)]
pub struct Imds {
    http: reqwest::Client,
    base: String,
}

impl Imds {
    /// A client for `endpoint` (`http://host[:port]`).
    pub fn new(endpoint: &str) -> Result<Imds, SpotError> {
        let base = endpoint.trim_end_matches('/');
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(SpotError::Endpoint(endpoint.to_string()));
        }
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| SpotError::Endpoint(format!("{endpoint}: {e}")))?;
        Ok(Imds { http, base: base.to_string() })
    }

    /// The interruption notice, if one has been posted.
    pub async fn notice(&self) -> Result<Option<Notice>, SpotError> {
        let (http, base) = (&self.http, &self.base);
        let token_path = "/latest/api/token";
        let (status, token) = send(
            http.put(format!("{base}{token_path}"))
                .header("X-aws-ec2-metadata-token-ttl-seconds", "300"),
            token_path,
        )
        .await?;
        if status != 200 {
            return Err(SpotError::Request {
                path: token_path.into(),
                reason: format!("HTTP {status}"),
            });
        }
        let path = "/latest/meta-data/spot/instance-action";
        let (status, body) = send(
            http.get(format!("{base}{path}")).header("X-aws-ec2-metadata-token", token.trim()),
            path,
        )
        .await?;
        match status {
            404 => Ok(None),
            200 => parse_notice(&body)
                .map(Some)
                .map_err(|reason| SpotError::Request { path: path.into(), reason }),
            other => Err(SpotError::Request { path: path.into(), reason: format!("HTTP {other}") }),
        }
    }
}

/// Sends one metadata request; returns the status and body.
async fn send(request: reqwest::RequestBuilder, path: &str) -> Result<(u16, String), SpotError> {
    let fail =
        |e: reqwest::Error| SpotError::Request { path: path.to_string(), reason: e.to_string() };
    let response = request.send().await.map_err(fail)?;
    let status = response.status().as_u16();
    Ok((status, response.text().await.map_err(fail)?))
}

fn parse_notice(body: &str) -> Result<Notice, String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    let action = v["action"].as_str().ok_or("no 'action' in the notice")?.to_string();
    let time = v["time"].as_str().ok_or("no 'time' in the notice")?;
    let time = DateTime::parse_from_rfc3339(time).map_err(|e| format!("time '{time}': {e}"))?;
    Ok(Notice { action, time: time.with_timezone(&Utc) })
}

/// Polls `endpoint` every [`POLL_EVERY`]; on a notice, asks `shutdown` to drain within the time
/// left before the interruption (less a margin for handing leases back).
pub fn watch(endpoint: String, shutdown: Shutdown) {
    tokio::spawn(async move {
        let imds = match Imds::new(&endpoint) {
            Ok(imds) => imds,
            Err(e) => {
                tracing::warn!(error = %e, "spot notices cannot be watched");
                return;
            }
        };
        let mut ticker = tokio::time::interval(POLL_EVERY);
        loop {
            tokio::select! {
                _ = shutdown.stop_taking.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match imds.notice().await {
                Ok(Some(notice)) => {
                    let left = (notice.time - Utc::now()).to_std().unwrap_or_default();
                    let window = left.saturating_sub(EXIT_MARGIN);
                    shutdown.request(
                        &format!("spot {} notice for {}", notice.action, notice.time),
                        window,
                    );
                    return;
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "no spot notice read"),
            }
        }
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A metadata service on loopback that answers the token, then a notice (or 404).
    async fn fake_imds(notice: Option<&'static str>) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = listener.accept().await else { return };
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.unwrap();
                // Header names are case-insensitive; clients send them in any case.
                let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let (status, body) = if req.starts_with("put /latest/api/token") {
                    ("200 OK", "TOKEN")
                } else if !req.contains("x-aws-ec2-metadata-token: token") {
                    ("401 Unauthorized", "")
                } else if let Some(body) = notice {
                    ("200 OK", body)
                } else {
                    ("404 Not Found", "")
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                s.write_all(reply.as_bytes()).await.unwrap();
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn no_notice_reads_as_none_and_a_notice_is_parsed_with_its_time() {
        let quiet = fake_imds(None).await;
        assert_eq!(Imds::new(&quiet).unwrap().notice().await.unwrap(), None);
        let noisy =
            fake_imds(Some(r#"{"action": "terminate", "time": "2026-01-01T00:02:00Z"}"#)).await;
        let n = Imds::new(&noisy).unwrap().notice().await.unwrap().unwrap();
        assert_eq!(n.action, "terminate");
        assert_eq!(n.time.to_rfc3339(), "2026-01-01T00:02:00+00:00");
    }

    #[tokio::test]
    async fn a_notice_makes_the_worker_drain() {
        let endpoint =
            fake_imds(Some(r#"{"action": "terminate", "time": "2099-01-01T00:00:00Z"}"#)).await;
        let shutdown = Shutdown::new(&tokio_util::sync::CancellationToken::new());
        watch(endpoint, shutdown.clone());
        tokio::time::timeout(Duration::from_secs(10), shutdown.stop_taking.cancelled())
            .await
            .unwrap();
        assert!(shutdown.window(Duration::ZERO) > Duration::from_secs(60));
    }
}
