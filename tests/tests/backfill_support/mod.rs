//! Shared set-up of the backfill tests: a bucket on the shared moto server holding the sample
//! items, the inventory, staging, the warehouse and the catalog; flags for the processes; and
//! read-back checks.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use earthcatalog_common::hash_index::HashIndex;
use earthcatalog_common::location::Location;
use earthcatalog_common::stores::Stores;
use earthcatalog_tests::ingest::{BUCKET, Samples, get, put};
use earthcatalog_tests::python::Python;
use earthcatalog_tests::readers::read_table;
use earthcatalog_tests::s3::S3Server;
use futures::TryStreamExt;
use object_store::ObjectStore;

/// The shared token of the test clusters.
pub const TOKEN: &str = "s3cr3t-test-token";
/// Longest wait for any one step (2 busy cores, a serialized S3 server).
pub const WAIT: Duration = Duration::from_secs(120);

const LIST_FILES: &str = r#"
import json, os, sys
from pyiceberg.catalog.sql import SqlCatalog
db, warehouse = sys.argv[1], sys.argv[2]
cat = SqlCatalog("earthcatalog", **{"uri": f"sqlite:///{db}", "warehouse": warehouse,
    "s3.endpoint": os.environ["AWS_ENDPOINT_URL"], "s3.access-key-id": "test",
    "s3.secret-access-key": "test", "s3.region": "us-east-1"})
t = cat.load_table("earthcatalog.stac_items")
print(json.dumps(sorted(task.file.file_path for task in t.scan().plan_files())))
"#;

/// `args` (a coordinator's flags from [`Env::coordinator_args`]) with leases of `seconds`
/// instead of the short default.
pub fn with_lease(mut args: Vec<String>, seconds: &str) -> Vec<String> {
    if let Some(at) = args.iter().position(|a| a == "--lease-seconds") {
        args[at + 1] = seconds.to_string();
    }
    args
}

/// One test's bucket and inputs.
pub struct Env {
    /// The S3 server.
    pub s3: &'static S3Server,
    /// PyIceberg.
    pub py: Python,
    /// The test's bucket.
    pub bucket: Location,
    /// The items uploaded.
    pub samples: Samples,
    /// Local files (token, catalog working copy, downloaded catalog).
    pub dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
}

impl Env {
    /// Uploads items `0..items` and their CSV inventory to a new bucket; `None` (skipped) when
    /// python or moto is missing outside CI.
    pub fn prepare(test: &str, items: u64) -> Option<Env> {
        let s3 = S3Server::shared(test)?;
        let py = Python::find(test)?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let bucket = s3.new_bucket().unwrap();
        let samples = Samples::itslive(0, items);
        let env = Env { s3, py, bucket, samples, dir: tempfile::tempdir().unwrap(), runtime };
        env.upload(&env.samples, "inventory.csv");
        std::fs::write(env.dir.path().join("token"), format!("{TOKEN}\n")).unwrap();
        Some(env)
    }

    /// Uploads `samples`' items and an inventory of them named `inventory`.
    pub fn upload(&self, samples: &Samples, inventory: &str) {
        let stores = self.stores();
        let items = self.bucket.join("items");
        let at = self.bucket.join(inventory);
        self.runtime.block_on(async {
            samples.upload(&stores, &items).await.unwrap();
            put(&stores, &at, samples.csv().into_bytes()).await.unwrap();
        });
    }

    /// Stores talking to the test server.
    pub fn stores(&self) -> Stores {
        self.s3.stores()
    }

    fn uri(&self, rel: &str) -> String {
        self.bucket.join(rel).uri()
    }

    /// Environment of every process (S3 endpoint and credentials).
    pub fn process_env(&self) -> Vec<(String, String)> {
        self.s3.env()
    }

    /// The coordinator's flags (small chunks and files, short leases), then `extra`.
    pub fn coordinator_args(&self, extra: &[&str]) -> Vec<String> {
        self.coordinator_args_for("inventory.csv", extra)
    }

    /// The coordinator's flags for the inventory uploaded as `inventory`, then `extra`.
    pub fn coordinator_args_for(&self, inventory: &str, extra: &[&str]) -> Vec<String> {
        let token = self.dir.path().join("token");
        let mut args: Vec<String> = [
            "--inventory",
            &self.uri(inventory),
            "--catalog",
            &self.dir.path().join("work/catalog.db").to_string_lossy(),
            "--catalog-store",
            &self.uri("catalog"),
            "--warehouse",
            &self.uri("wh"),
            "--staging",
            &self.uri("staging"),
            "--h3-resolution",
            "1",
            "--source",
            &format!("{BUCKET}={}", self.uri("items")),
            "--chunk-size",
            "20",
            "--compact-rows",
            "50",
            "--fetch-concurrency",
            "8",
            "--lease-seconds",
            "3",
            "--renew-seconds",
            "0.5",
            "--token-file",
            &token.to_string_lossy(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// A worker's flags (2 slots).
    pub fn worker_args(&self) -> Vec<String> {
        self.worker_args_slots(2)
    }

    /// A worker's flags with `slots` slots.
    pub fn worker_args_slots(&self, slots: usize) -> Vec<String> {
        let token = self.dir.path().join("token").to_string_lossy().into_owned();
        ["--token-file", &token, "--slots", &slots.to_string(), "--connect-seconds", "10"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    /// Downloads the published catalog to a local file.
    fn catalog_copy(&self) -> PathBuf {
        let stores = self.stores();
        let at = self.bucket.join("catalog/catalog.db");
        let bytes = self.runtime.block_on(get(&stores, &at)).unwrap();
        let path = self.dir.path().join("published.db");
        std::fs::write(&path, bytes).unwrap();
        path
    }

    /// Asserts that PyIceberg reads exactly the expected (id, cell) rows, each once.
    pub fn assert_exact_table(&self, resolution: u8) {
        self.assert_table_holds(&self.samples, resolution);
    }

    /// Asserts that PyIceberg reads exactly `samples`' (id, cell) rows, each once.
    pub fn assert_table_holds(&self, samples: &Samples, resolution: u8) {
        let view =
            read_table(&self.py, &self.catalog_copy(), &self.uri("wh"), Some(self.s3)).unwrap();
        let expected = samples.expected_rows(resolution);
        assert_eq!(view.row_count, view.rows.len(), "no row is duplicated");
        assert_eq!(view.rows.len(), expected.len());
        assert_eq!(view.rows, expected);
    }

    /// The data files the table lists, per PyIceberg.
    pub fn registered_files(&self) -> BTreeSet<String> {
        let db = self.catalog_copy();
        let env: Vec<(String, String)> = self.s3.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let out = self
            .py
            .run_with_env(LIST_FILES, &[&db.to_string_lossy(), &self.uri("wh")], &env)
            .unwrap();
        let last = out.lines().rev().find(|l| !l.trim().is_empty()).unwrap();
        serde_json::from_str(last).unwrap()
    }

    /// Every object under `rel`.
    pub fn objects(&self, rel: &str) -> BTreeSet<String> {
        let stores = self.stores();
        let folder = self.bucket.join(rel);
        self.runtime.block_on(async {
            let o = stores.resolve(&folder).unwrap();
            let store: &dyn ObjectStore = o.store.as_ref();
            let metas: Vec<_> = store.list(Some(&o.path)).try_collect().await.unwrap();
            let Location::S3 { bucket, .. } = &self.bucket else { panic!("not s3") };
            metas.into_iter().map(|m| format!("s3://{bucket}/{}", m.location)).collect()
        })
    }

    /// Whether the warehouse's data files are exactly the registered ones (no leftovers).
    pub fn warehouse_files_are_exactly_the_registered_ones(&self) -> bool {
        let data: BTreeSet<String> = self
            .objects("wh")
            .into_iter()
            .filter(|o| o.ends_with(".parquet") && o.contains("/grid_partition="))
            .collect();
        let registered = self.registered_files();
        assert_eq!(data, registered, "warehouse data files vs registered files");
        true
    }

    /// The bytes of the object at `rel` in the test's bucket.
    pub fn read(&self, rel: &str) -> Vec<u8> {
        self.runtime.block_on(get(&self.stores(), &self.bucket.join(rel))).unwrap()
    }

    /// Writes `bytes` at `rel` in the test's bucket.
    pub fn write(&self, rel: &str, bytes: Vec<u8>) {
        self.runtime.block_on(put(&self.stores(), &self.bucket.join(rel), bytes)).unwrap()
    }

    /// The item-id hash index at `rel`.
    pub fn hash_index(&self, rel: &str) -> HashIndex {
        self.runtime.block_on(HashIndex::read(&self.stores(), &self.bucket.join(rel))).unwrap()
    }

    /// Whether the catalog was published to the catalog store.
    pub fn catalog_published(&self) -> bool {
        self.objects("catalog").iter().any(|o| o.ends_with("/catalog.db"))
    }

    /// Objects left in staging.
    pub fn staging_objects(&self) -> BTreeSet<String> {
        self.objects("staging")
    }

    /// Whether staging holds nothing (pending failure lists aside).
    pub fn staging_is_empty(&self) -> bool {
        self.staging_objects().iter().all(|o| o.contains("/staging/pending/"))
    }

    /// How many accepted ingest results the coordinator recorded.
    pub fn recorded_ingest_results(&self) -> usize {
        self.staging_objects().iter().filter(|o| o.contains("/results/ingest/")).count()
    }
}
