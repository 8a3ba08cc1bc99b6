//! The coordinator's status page as an operator opens it: a real backfill with
//! `--status-listen` and a token, the page rendered by headless Chromium mid-run (its script
//! fetched the status and filled the page), what it shows checked against
//! `earthcatalog status --json`, and a screenshot kept as a test artefact.
#![allow(clippy::unwrap_used)]

#[path = "backfill_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use earthcatalog_tests::binaries;
use earthcatalog_tests::chromium::{Chromium, texts_of};
use earthcatalog_tests::cluster::{Cluster, free_port};
use serde_json::Value;
use support::{Env, TOKEN, WAIT, with_lease};

/// What the page and the status JSON both say, leaving out what moves with the clock (times,
/// rates).
#[derive(Debug, PartialEq, Eq)]
struct Shown {
    fields: BTreeMap<String, String>,
    /// Worker id → its leases as "phase #task subject (attempt n".
    workers: BTreeMap<String, Vec<String>>,
}

const FIELDS: [&str; 6] = ["run_id", "phase", "items", "rows", "workers_alive", "workers_wanted"];

fn shown_by_json(s: &Value) -> Shown {
    let text = |v: &Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
    let mut fields: BTreeMap<String, String> =
        FIELDS.iter().map(|f| (f.to_string(), text(&s[*f]))).collect();
    if s["finished"] == true {
        fields.insert("phase".into(), format!("{} · finished", text(&s["phase"])));
    }
    for phase in ["ingest", "compact"] {
        let mut total = 0;
        for state in ["pending", "leased", "done", "failed"] {
            let n = s[phase][state].as_u64().unwrap();
            total += n;
            fields.insert(format!("{phase}.{state}"), n.to_string());
        }
        fields.insert(format!("{phase}.total"), total.to_string());
    }
    let workers = s["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let leases = w["leases"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    format!(
                        "{} #{} {} (attempt {}",
                        text(&l["phase"]),
                        l["task"],
                        text(&l["subject"]),
                        l["attempt"]
                    )
                })
                .collect();
            (text(&w["id"]), leases)
        })
        .collect();
    Shown { fields, workers }
}

fn shown_on_page(dom: &str) -> Shown {
    let mut fields = BTreeMap::new();
    let names =
        FIELDS.iter().map(|f| f.to_string()).chain(["ingest", "compact"].iter().flat_map(|p| {
            ["pending", "leased", "done", "failed", "total"].map(|s| format!("{p}.{s}"))
        }));
    for name in names {
        let texts = texts_of(dom, "data-field", &name);
        assert!(!texts.is_empty(), "the page has no field {name}");
        fields.insert(name, texts[0].clone());
    }
    // Each worker row: its id, when it was last seen, then its leases one per line, each
    // ending in ", N s left)".
    let mut workers = BTreeMap::new();
    for row in dom.split("<tr data-worker=\"").skip(1) {
        let row = row.split("</tr>").next().unwrap();
        let id = row.split('"').next().unwrap().to_string();
        let cells: Vec<&str> = row
            .split("<td")
            .skip(1)
            .map(|c| c.split_once('>').unwrap().1.split('<').next().unwrap())
            .collect();
        let leases = cells[2]
            .lines()
            .filter(|l| *l != "idle")
            .map(|l| l.rsplit_once(", ").unwrap().0.to_string())
            .collect();
        workers.insert(id, leases);
    }
    Shown { fields, workers }
}

fn status_json(url: &str, token_file: &Path) -> Value {
    let out = Command::new(binaries::earthcatalog())
        .args(["status", "--coordinator", url, "--json", "--token-file"])
        .arg(token_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The status code and body of a plain GET of `path`.
fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let code = response.split(' ').nth(1).unwrap().parse().unwrap();
    (code, response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

#[test]
fn the_status_page_shows_mid_run_what_status_json_says_and_asks_for_the_token() {
    let Some(env) = Env::prepare("status_page", 200) else { return };
    let Some(chromium) = Chromium::find("status_page") else { return };
    let port = free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    // Leases long enough that a paused worker keeps them while the page is read.
    let args = with_lease(env.coordinator_args(&["--status-listen", &listen]), "60");
    let mut c = Cluster::new(env.process_env(), args).unwrap();
    c.start_coordinator().unwrap();
    let w = c.start_worker(&env.worker_args_slots(2)).unwrap();
    let token_file = env.dir.path().join("token");

    // Without the token there is nothing to see.
    c.wait_status(Some(TOKEN), WAIT, "Phase 2", |s| s.phase == "ingest").unwrap();
    let (code, body) = http_get(port, "/");
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("token"), "says what is missing: {body}");
    assert_eq!(http_get(port, "/status.json?token=wrong").0, 401);
    let (code, body) = http_get(port, &format!("/status.json?token={TOKEN}"));
    assert_eq!(code, 200, "{body}");

    // The run frozen mid-ingest, some chunks in: the only worker paused while it holds leases.
    c.wait_status(Some(TOKEN), WAIT, "4 chunks ingested", |s| {
        s.ingest.as_ref().is_some_and(|c| c.done >= 4)
    })
    .unwrap();
    c.pause_holding_a_lease(w, Some(TOKEN), "ingest").unwrap();
    let page = format!("http://{listen}/?token={TOKEN}");
    let before = status_json(&c.url(), &token_file);
    let dom = chromium.dom(&page).unwrap();
    let after = status_json(&c.url(), &token_file);
    assert_eq!(shown_by_json(&before), shown_by_json(&after), "the run was not frozen");
    assert!(dom.contains(r#"data-loaded="true""#), "the page never got its status:\n{dom}");
    let on_page = shown_on_page(&dom);
    assert_eq!(on_page, shown_by_json(&after), "page vs status --json:\n{after:#}");
    let leases: usize = on_page.workers.values().map(Vec::len).sum();
    assert!(leases >= 1, "the paused worker's leases are listed: {on_page:?}");
    assert_eq!(on_page.fields["phase"], "ingest");

    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    chromium.screenshot(&page, 1200, 900, &shot).unwrap();
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "a real screenshot");
    eprintln!("status page screenshot: {}", shot.display());

    // Let go, the run finishes exactly.
    c.workers[w].signal("CONT").unwrap();
    let exit = c.coordinator().wait(WAIT).unwrap();
    assert!(exit.success(), "{}", c.coordinator().log());
    env.assert_exact_table(1);
}
