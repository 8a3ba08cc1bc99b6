//! Item fetches against a local HTTP server playing S3 with scripted failures: how many
//! requests each kind of failure costs, and what the run records for the item.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use earthcatalog_common::location::Location;
use earthcatalog_common::partition::{GridSpec, open_partitioner};
use earthcatalog_common::pipeline::{Collected, DataPath, DataPathOptions, ObjectKey};
use earthcatalog_common::s3_credentials::AwsEnvironment;
use earthcatalog_common::sample::itslive_item;
use earthcatalog_common::stores::{S3Settings, Stores};
use object_store::ObjectStoreExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the server answers for a path: a status and body per request, the last one repeated.
type Script = Vec<(u16, String)>;

/// A one-bucket S3 stand-in that counts the requests for each path.
struct Server {
    endpoint: String,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Server {
    async fn start(scripts: HashMap<String, Script>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let counts = Arc::new(Mutex::new(HashMap::new()));
        let scripts = Arc::new(scripts);
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (c, h) = (counts.clone(), heads.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                tokio::spawn(answer(stream, scripts.clone(), c.clone(), h.clone()));
            }
        });
        Server { endpoint, counts, heads }
    }

    fn requests(&self, path: &str) -> usize {
        self.counts.lock().unwrap().get(path).copied().unwrap_or(0)
    }

    /// Fetches `keys` of bucket `b` through the data path with the default retry settings.
    async fn collect(&self, keys: &[&str]) -> Collected {
        let stores = Arc::new(Stores::new(S3Settings {
            endpoint: Some(self.endpoint.clone()),
            allow_http: Some(true),
            anonymous: Some(true),
            ..Default::default()
        }));
        let partitioner = open_partitioner(&GridSpec::h3(1).unwrap(), &stores).await.unwrap();
        let path = DataPath::new(stores, partitioner, DataPathOptions::default());
        path.collect(keys.iter().map(|k| ObjectKey::new("b", *k)).collect()).await
    }
}

/// Answers one request per connection from the script of its path.
async fn answer(
    mut stream: TcpStream,
    scripts: Arc<HashMap<String, Script>>,
    counts: Arc<Mutex<HashMap<String, usize>>>,
    heads: Arc<Mutex<Vec<String>>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    heads.lock().unwrap().push(text.to_string());
    let n = {
        let mut counts = counts.lock().unwrap();
        let n = counts.entry(path.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let (status, body) = match scripts.get(&path) {
        Some(script) => script[(n - 1).min(script.len() - 1)].clone(),
        None => (404, s3_error("NoSuchKey")),
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Slow Down",
        _ => "Other",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Length: {}\r\nContent-Type: application/xml\r\n\
         ETag: \"e{n}\"\r\nLast-Modified: Wed, 21 Oct 2015 07:28:00 GMT\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

fn s3_error(code: &str) -> String {
    format!("<?xml version=\"1.0\"?><Error><Code>{code}</Code><Message>{code}</Message></Error>")
}

fn scripts(pairs: &[(&str, Script)]) -> HashMap<String, Script> {
    pairs.iter().map(|(k, v)| (format!("/b/{k}"), v.clone())).collect()
}

#[tokio::test]
async fn an_item_behind_two_slow_downs_is_fetched_on_the_third_request() {
    let item = itslive_item(7).to_string();
    let server = Server::start(scripts(&[(
        "slow.json",
        vec![(503, s3_error("SlowDown")), (503, s3_error("SlowDown")), (200, item)],
    )]))
    .await;
    let got = server.collect(&["slow.json"]).await;
    assert_eq!(got.failures, vec![]);
    assert_eq!(got.items, 1);
    assert_eq!(server.requests("/b/slow.json"), 3);
}

#[tokio::test]
async fn a_persistent_server_error_is_recorded_as_fetch_failed_after_eight_requests() {
    // Two rounds (RetryPolicy::default) of one request plus three client retries each.
    let server =
        Server::start(scripts(&[("broken.json", vec![(500, s3_error("InternalError"))])])).await;
    let got = server.collect(&["broken.json"]).await;
    assert_eq!(got.items, 0);
    assert_eq!(got.failures.len(), 1);
    let f = &got.failures[0];
    assert_eq!(
        (f.bucket.as_str(), f.key.as_str(), f.kind.as_str()),
        ("b", "broken.json", "fetch_failed")
    );
    assert!(f.reason.starts_with("failed after 2 attempts: "), "{}", f.reason);
    assert!(f.reason.contains("500"), "{}", f.reason);
    assert_eq!(server.requests("/b/broken.json"), 8);
}

#[tokio::test]
async fn a_missing_item_is_recorded_as_not_found_after_one_request() {
    let server = Server::start(HashMap::new()).await;
    let got = server.collect(&["missing.json"]).await;
    assert_eq!(got.failures.len(), 1);
    assert_eq!(got.failures[0].kind, "not_found");
    assert_eq!(got.failures[0].key, "missing.json");
    assert_eq!(server.requests("/b/missing.json"), 1);
}

#[tokio::test]
async fn broken_json_is_a_parse_failure_of_the_one_body_fetched() {
    let server =
        Server::start(scripts(&[("bad.json", vec![(200, "{\"id\": \"x\",".into())])])).await;
    let good = itslive_item(1).to_string();
    let server2 = Server::start(scripts(&[("good.json", vec![(200, good)])])).await;
    let got = server.collect(&["bad.json"]).await;
    assert_eq!(got.items, 0);
    assert_eq!(got.failures.len(), 1);
    assert_eq!(got.failures[0].kind, "invalid_json");
    assert_eq!(server.requests("/b/bad.json"), 1);
    // The same server code serves a good item (the failure above is the JSON, not the server).
    assert_eq!(server2.collect(&["good.json"]).await.items, 1);
}

#[tokio::test]
async fn eks_pod_identity_credentials_are_asked_for_and_sign_the_requests() {
    let creds = r#"{"AccessKeyId":"ASIAPODIDENTITY","SecretAccessKey":"s","Token":"t","Expiration":"2099-01-01T00:00:00Z"}"#;
    let server = Server::start(
        [
            ("/creds".to_string(), vec![(200, creds.to_string())]),
            ("/b/item.json".to_string(), vec![(200, "{}".to_string())]),
        ]
        .into_iter()
        .collect(),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("eks-pod-identity-token");
    std::fs::write(&token_file, "pod-token").unwrap();
    let env = AwsEnvironment::from_vars([
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", format!("{}/creds", server.endpoint)),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", token_file.display().to_string()),
    ]);
    let stores = Stores::new(S3Settings {
        endpoint: Some(server.endpoint.clone()),
        allow_http: Some(true),
        ..Default::default()
    })
    .with_aws_environment(env);
    let o = stores.resolve(&Location::parse("s3://b/item.json").unwrap()).unwrap();
    let got = o.store.get(&o.path).await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], b"{}");
    assert_eq!(server.requests("/creds"), 1);
    let heads = server.heads.lock().unwrap().clone();
    let creds_head = heads.iter().find(|h| h.starts_with("GET /creds")).unwrap().to_lowercase();
    assert!(creds_head.contains("authorization: pod-token"), "{creds_head}");
    let item_head = heads.iter().find(|h| h.starts_with("GET /b/item.json")).unwrap();
    assert!(item_head.contains("Credential=ASIAPODIDENTITY/"), "{item_head}");
    assert!(item_head.to_lowercase().contains("x-amz-security-token: t"), "{item_head}");
}
