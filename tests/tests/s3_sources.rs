//! Items read from another S3 endpoint than the warehouse: two moto servers, the items in a
//! bucket on one (read unsigned through `--s3-bucket`), inventory, catalog and warehouse on the
//! other (the `AWS_*` environment, signed). The table is read back with PyIceberg.

#![allow(clippy::unwrap_used)]

use std::process::{Command, Output};

use earthcatalog_common::location::Location;
use earthcatalog_tests::binaries::earthcatalog;
use earthcatalog_tests::ingest::{BUCKET, Samples, get, put};
use earthcatalog_tests::python::Python;
use earthcatalog_tests::readers::read_table;
use earthcatalog_tests::s3::S3Server;

/// Runs the CLI with `args` and `env`, and no other S3 settings from this process.
fn run(args: &[String], env: &[(String, String)]) -> Output {
    let mut cmd = Command::new(earthcatalog());
    for (k, _) in std::env::vars() {
        if k.starts_with("AWS_") || k.starts_with("EARTHCATALOG_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.env("RUST_LOG", "info").args(args).envs(env.iter().cloned()).output().unwrap();
    eprintln!("$ earthcatalog {}\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    out
}

/// Lets anyone read `bucket`'s objects, as the public ITS_LIVE bucket does.
fn make_public(py: &Python, server: &S3Server, bucket: &str) {
    let env = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    py.run_with_env(PUBLIC_READ, &[bucket], &env).unwrap();
}

const PUBLIC_READ: &str = r#"
import json, os, sys, boto3
s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
b = sys.argv[1]
s3.put_bucket_policy(Bucket=b, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{b}/*"}]}))
"#;

#[tokio::test]
async fn items_are_read_from_a_mirror_bucket_on_another_endpoint_given_by_s3_bucket() {
    let Some(py) = Python::find("s3 sources") else { return };
    let Some(home) = S3Server::shared("s3 sources") else { return };
    let Some(mirror_server) = S3Server::start("s3 sources mirror") else { return };
    // The mirror bucket exists only on the second server: items cannot come from the first.
    mirror_server.create_bucket("mirror").unwrap();
    let samples = Samples::itslive(300, 9);
    samples
        .upload(&mirror_server.stores(), &Location::parse("s3://mirror/items").unwrap())
        .await
        .unwrap();
    make_public(&py, &mirror_server, "mirror");

    let bucket = home.new_bucket().unwrap();
    let stores = home.stores();
    put(&stores, &bucket.join("inv.csv"), samples.csv().into_bytes()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = bucket.join("run");
    let args: Vec<String> = [
        "incremental",
        "--inventory",
        &bucket.join("inv.csv").to_string(),
        "--source",
        &format!("{BUCKET}=s3://mirror/items"),
        "--s3-bucket",
        &format!("mirror:endpoint={},allow_http=true,anonymous=true", mirror_server.endpoint()),
        "--catalog",
        &dir.path().join("work.db").display().to_string(),
        "--catalog-store",
        &root.join("catalog").to_string(),
        "--warehouse",
        &root.join("warehouse").to_string(),
        "--json",
    ]
    .map(String::from)
    .to_vec();
    let out = run(&args, &home.env());
    assert_eq!(out.status.code(), Some(0));

    let db = dir.path().join("uploaded.db");
    std::fs::write(&db, get(&stores, &root.join("catalog/catalog.db")).await.unwrap()).unwrap();
    let table = read_table(&py, &db, &root.join("warehouse").to_string(), Some(home)).unwrap();
    assert_eq!(table.rows, samples.expected_rows(1));
    assert_eq!(table.row_count, table.rows.len());
}

#[test]
fn a_bad_s3_bucket_entry_stops_before_any_work_naming_the_entry() {
    let base = ["incremental", "--inventory", "/nonexistent/inv.csv"].map(String::from).to_vec();
    let mut args = base.clone();
    args.extend(["--s3-bucket".into(), "mirror:endpont=http://127.0.0.1:9".into()]);
    let out = run(&args, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("S3 bucket entry 'mirror:endpont=http://127.0.0.1:9': unknown key 'endpont'"),
        "{stderr}"
    );

    let env =
        [("EARTHCATALOG_S3_BUCKETS".to_string(), "ok:region=x;pub:anonymous=perhaps".to_string())];
    let out = run(&base, &env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'pub:anonymous=perhaps': anonymous=perhaps: expected true or false"),
        "{stderr}"
    );
}
