//! The deployments in `deploy/` (Dockerfile, docker compose, Kubernetes, CloudFormation) only
//! use flags and `EARTHCATALOG_*` variables the real binaries accept, read from their `--help`;
//! the Kubernetes manifests render with kustomize and validate against the Kubernetes schemas;
//! the CloudFormation template passes cfn-lint; the pieces agree with each other (ports,
//! addresses, drain windows).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use earthcatalog_tests::binaries;
use earthcatalog_tests::python::{Python, in_ci, workspace_root};
use serde_json::Value;

/// The names of the two binaries, as a manifest's command spells them.
const CLI: &str = "earthcatalog";
const WORKER: &str = "earthcatalog-worker";

/// Flags and environment variables one program (binary + subcommand) accepts.
#[derive(Debug, Default)]
struct Accepted {
    flags: BTreeSet<String>,
    env: BTreeSet<String>,
}

/// Parses clap's `--help`: every `--long-flag` and every `[env: NAME…]`.
fn parse_help(help: &str) -> Accepted {
    let mut acc = Accepted::default();
    for (i, _) in help.match_indices("--") {
        let flag: String =
            help[i + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if !flag.is_empty() {
            acc.flags.insert(format!("--{flag}"));
        }
    }
    for (i, m) in help.match_indices("[env: ") {
        let name: String = help[i + m.len()..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        acc.env.insert(name);
    }
    acc
}

/// What one place in a manifest runs: a program (`["earthcatalog", "coordinator"]`), the flags
/// on its command line and the `EARTHCATALOG_*` variables it is given.
#[derive(Debug)]
struct Usage {
    place: String,
    program: Vec<String>,
    flags: Vec<String>,
    env: Vec<String>,
}

/// Finds the program in a command line (after `docker run … IMAGE`, say) and its flags.
fn program_of(tokens: &[String]) -> Option<(Vec<String>, Vec<String>)> {
    // Not a flag's value (`docker run --name earthcatalog-worker … IMAGE earthcatalog-worker`).
    let at = (0..tokens.len()).find(|&i| {
        (tokens[i] == CLI || tokens[i] == WORKER) && (i == 0 || !tokens[i - 1].starts_with('-'))
    })?;
    let mut program = vec![tokens[at].clone()];
    let mut rest = &tokens[at + 1..];
    if tokens[at] == CLI
        && let Some(sub) = rest.first().filter(|s| !s.starts_with('-'))
    {
        program.push(sub.clone());
        rest = &rest[1..];
    }
    let flags = rest
        .iter()
        .filter(|t| t.starts_with("--"))
        .map(|t| t.split('=').next().unwrap_or(t).to_string())
        .collect();
    Some((program, flags))
}

/// Every `EARTHCATALOG_*` name in `text`.
fn env_names_in(text: &str) -> Vec<String> {
    let mut names = BTreeSet::new();
    for (i, m) in text.match_indices("EARTHCATALOG_") {
        let tail: String = text[i + m.len()..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        names.insert(format!("{m}{tail}"));
    }
    names.into_iter().collect()
}

/// Runs the binaries' `--help` once per program and checks usages against them.
struct Checker {
    help: HashMap<Vec<String>, Option<Accepted>>,
}

impl Checker {
    fn new() -> Self {
        Checker { help: HashMap::new() }
    }

    fn accepted(&mut self, program: &[String]) -> Option<&Accepted> {
        self.help
            .entry(program.to_vec())
            .or_insert_with(|| {
                let exe = match program[0].as_str() {
                    CLI => binaries::earthcatalog(),
                    WORKER => binaries::worker(),
                    _ => return None,
                };
                let out = Command::new(&exe).args(&program[1..]).arg("--help").output().ok()?;
                out.status.success().then(|| parse_help(&String::from_utf8_lossy(&out.stdout)))
            })
            .as_ref()
    }

    /// Everything wrong with `usages`, one line each, naming the place and the program.
    fn problems(&mut self, usages: &[Usage]) -> Vec<String> {
        let mut problems = Vec::new();
        for u in usages {
            let name = u.program.join(" ");
            let Some(acc) = self.accepted(&u.program) else {
                problems.push(format!("{}: `{name}` is not a command of the binaries", u.place));
                continue;
            };
            for f in u.flags.iter().filter(|f| !acc.flags.contains(*f)) {
                problems.push(format!("{}: `{name}` has no flag {f}", u.place));
            }
            for e in u.env.iter().filter(|e| !acc.env.contains(*e)) {
                problems.push(format!("{}: `{name}` reads no variable {e}", u.place));
            }
        }
        problems
    }

    fn assert_clean(&mut self, usages: &[Usage]) {
        let problems = self.problems(usages);
        assert!(problems.is_empty(), "manifests use what the binaries do not accept:\n{}", {
            problems.join("\n")
        });
    }
}

fn deploy_dir() -> PathBuf {
    workspace_root().join("deploy")
}

/// The venv python with `module` importable; `None` (skip) outside CI when it is not.
fn python_with(test: &str, module: &str) -> Option<Python> {
    let py = Python::find(test)?;
    if py.run(&format!("import {module}"), &[]).is_ok() {
        return Some(py);
    }
    let msg = format!("{test}: python module {module} missing (run scripts/setup-python.sh)");
    assert!(!in_ci(), "{msg}");
    eprintln!("SKIPPED {msg}");
    None
}

/// YAML file (all documents) → JSON, with PyYAML (merge keys `<<:` resolved).
fn yaml_documents(py: &Python, path: &Path) -> Vec<Value> {
    let script = "import json, sys, yaml\n\
                  docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]\n\
                  print(json.dumps(docs))";
    let out = py.run_json(script, &[&path.to_string_lossy()]).unwrap();
    out.as_array().cloned().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter().map(|x| x.as_str().map(str::to_string).unwrap_or(x.to_string())).collect()
        })
        .unwrap_or_default()
}

/// `environment:` of a compose service, as a map or as a `K=V` list.
fn compose_env(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or(v.to_string())))
            .collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str()?.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The earthcatalog programs a compose file runs, per service.
fn compose_usages(compose: &Value) -> Vec<Usage> {
    let mut usages = Vec::new();
    let services = compose["services"].as_object().cloned().unwrap_or_default();
    for (name, service) in &services {
        let command = match &service["command"] {
            Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
            v => strings(v),
        };
        let env = compose_env(service);
        let ours = service["image"].as_str().is_some_and(|i| i.contains("earthcatalog"));
        match program_of(&command) {
            Some((program, flags)) => usages.push(Usage {
                place: format!("compose service {name}"),
                program,
                flags,
                env: env.keys().filter(|k| k.starts_with("EARTHCATALOG_")).cloned().collect(),
            }),
            // Our image with no program named would run the image's default (--help) and stop.
            None if ours => usages.push(Usage {
                place: format!("compose service {name} (command {command:?})"),
                program: vec!["<no earthcatalog program in the command>".into()],
                flags: vec![],
                env: vec![],
            }),
            None => {}
        }
        // A healthcheck runs in the same container; its variables belong to the main command.
        let check = strings(&service["healthcheck"]["test"]);
        if check.first().is_some_and(|c| c == "CMD")
            && let Some((program, flags)) = program_of(&check[1..])
        {
            usages.push(Usage {
                place: format!("compose service {name} healthcheck"),
                program,
                flags,
                env: vec![],
            });
        }
    }
    usages
}

#[test]
fn the_compose_file_runs_the_sample_through_a_coordinator_and_workers_with_accepted_settings() {
    let Some(py) = python_with("deploy_manifests compose", "yaml") else { return };
    let path = deploy_dir().join("compose/docker-compose.yml");
    let compose = yaml_documents(&py, &path).remove(0);
    let services = &compose["services"];
    for s in ["s3", "buckets", "sample", "coordinator", "worker"] {
        assert!(services[s].is_object(), "{}: no service {s}", path.display());
    }
    let usages = compose_usages(&compose);
    let programs: BTreeMap<&str, String> = usages
        .iter()
        .map(|u| (u.place.trim_start_matches("compose service "), u.program.join(" ")))
        .collect();
    assert_eq!(programs.get("sample").map(String::as_str), Some("earthcatalog sample"));
    assert_eq!(programs.get("coordinator").map(String::as_str), Some("earthcatalog coordinator"));
    assert_eq!(programs.get("worker").map(String::as_str), Some("earthcatalog-worker"));
    assert_eq!(
        programs.get("coordinator healthcheck").map(String::as_str),
        Some("earthcatalog health")
    );
    Checker::new().assert_clean(&usages);

    // The pieces must meet: workers dial the coordinator's service on the port it listens on,
    // and the coordinator reads the inventory and items where the sample service wrote them.
    let coordinator = compose_env(&services["coordinator"]);
    let worker = compose_env(&services["worker"]);
    // Workers dial an alias the coordinator has on the control network only, so a worker cut
    // off from that network cannot reach it through the data network (where both are).
    let port = coordinator["EARTHCATALOG_LISTEN"].rsplit(':').next().unwrap().to_string();
    let networks = &services["coordinator"]["networks"];
    let alias = networks["control"]["aliases"][0].as_str().unwrap();
    assert_eq!(worker["EARTHCATALOG_COORDINATOR"], format!("http://{alias}:{port}"));
    assert!(!networks["data"]["aliases"].is_array(), "the alias is on the control network only");
    assert_eq!(compose["networks"]["control"]["internal"], true, "control is a private network");
    assert_eq!(strings(&services["worker"]["networks"]), ["control", "data"]);
    assert_eq!(strings(&services["s3"]["networks"]), ["data"]);
    let sample = strings(&services["sample"]["command"]);
    let out = &sample[sample.iter().position(|t| t == "--out").unwrap() + 1];
    assert_eq!(coordinator["EARTHCATALOG_INVENTORY"], format!("{out}/inventory.csv"));
    assert_eq!(coordinator["EARTHCATALOG_SOURCES"], format!("its-live-data={out}/items"));
    assert_eq!(
        services["coordinator"]["depends_on"]["sample"]["condition"],
        "service_completed_successfully"
    );
    let drain: u64 = worker["EARTHCATALOG_DRAIN_SECONDS"].parse().unwrap();
    let grace = services["worker"]["stop_grace_period"].as_str().unwrap();
    let grace: u64 = grace.trim_end_matches('s').parse().unwrap();
    assert!(grace > drain, "worker stop_grace_period {grace}s must exceed the drain {drain}s");
}

#[test]
fn a_manifest_flag_or_variable_the_binaries_do_not_know_is_reported_by_name() {
    let Some(py) = python_with("deploy_manifests typo", "yaml") else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker-compose.yml");
    std::fs::write(
        &path,
        "services:\n  coordinator:\n    image: ghcr.io/earthcatalog/earthcatalog:dev\n    \
         command: [earthcatalog, coordinator, --chunk-sise, '10']\n    \
         environment:\n      EARTHCATALOG_LEASE_SECOND: '60'\n  \
         worker:\n    image: ghcr.io/earthcatalog/earthcatalog:dev\n    \
         command: earthcatalog-worker --spot --slot 2\n  \
         odd:\n    image: ghcr.io/earthcatalog/earthcatalog:dev\n    command: [earthcatalog, backfil]\n",
    )
    .unwrap();
    let compose = yaml_documents(&py, &path).remove(0);
    let mut problems = Checker::new().problems(&compose_usages(&compose));
    problems.sort();
    assert_eq!(
        problems,
        [
            "compose service coordinator: `earthcatalog coordinator` has no flag --chunk-sise",
            "compose service coordinator: `earthcatalog coordinator` reads no variable EARTHCATALOG_LEASE_SECOND",
            "compose service odd: `earthcatalog backfil` is not a command of the binaries",
            "compose service worker: `earthcatalog-worker` has no flag --slot",
        ]
    );
}

/// Renders `dir` (a copy of deploy/k8s with the example token in place) with kubectl.
fn kustomize(dir: &Path) -> Option<String> {
    let out = match Command::new("kubectl").arg("kustomize").arg(dir).output() {
        Ok(o) => o,
        Err(e) => {
            let msg = format!("deploy_manifests: kubectl not runnable ({e})");
            assert!(!in_ci(), "{msg}");
            eprintln!("SKIPPED {msg}");
            return None;
        }
    };
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The earthcatalog programs the rendered Jobs run, with the variables their ConfigMaps give.
fn k8s_usages(docs: &[Value], variant: &str) -> Vec<Usage> {
    let config_maps: HashMap<&str, &Value> = docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .filter_map(|d| Some((d["metadata"]["name"].as_str()?, &d["data"])))
        .collect();
    let mut usages = Vec::new();
    for doc in docs.iter().filter(|d| d["kind"] == "Job") {
        let job = doc["metadata"]["name"].as_str().unwrap_or("?");
        for c in doc["spec"]["template"]["spec"]["containers"].as_array().unwrap() {
            let mut command = strings(&c["command"]);
            command.extend(strings(&c["args"]));
            let Some((program, flags)) = program_of(&command) else {
                panic!("{variant}: Job {job} runs no earthcatalog program: {command:?}")
            };
            let mut env: Vec<String> = c["env"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["name"].as_str())
                .map(str::to_string)
                .collect();
            for from in c["envFrom"].as_array().into_iter().flatten() {
                let name = from["configMapRef"]["name"].as_str().unwrap_or_default();
                let data = config_maps.get(name).unwrap_or_else(|| {
                    panic!("{variant}: Job {job} reads ConfigMap {name}, which is not rendered")
                });
                env.extend(data.as_object().into_iter().flatten().map(|(k, _)| k.clone()));
            }
            env.retain(|e| e.starts_with("EARTHCATALOG_"));
            usages.push(Usage { place: format!("{variant} Job {job}"), program, flags, env });
        }
    }
    usages
}

fn find<'a>(docs: &'a [Value], kind: &str, prefix: &str) -> &'a Value {
    docs.iter()
        .find(|d| {
            d["kind"] == kind
                && d["metadata"]["name"].as_str().is_some_and(|n| n.starts_with(prefix))
        })
        .unwrap_or_else(|| panic!("no {kind} {prefix}* rendered"))
}

fn config_value<'a>(docs: &'a [Value], prefix: &str, key: &str) -> &'a str {
    find(docs, "ConfigMap", prefix)["data"][key]
        .as_str()
        .unwrap_or_else(|| panic!("{prefix}: no {key}"))
}

#[test]
fn the_kubernetes_manifests_render_validate_and_only_use_accepted_settings() {
    let Some(py) = python_with("deploy_manifests k8s", "kubernetes_validate") else { return };
    let work = tempfile::tempdir().unwrap();
    let k8s = work.path().join("k8s");
    copy_dir(&deploy_dir().join("k8s"), &k8s);
    // What the operator does first: provide the token file the secretGenerator reads.
    std::fs::copy(k8s.join("base/token.example"), k8s.join("base/token")).unwrap();
    let mut checker = Checker::new();
    for (variant, dir) in
        [("deploy/k8s", k8s.clone()), ("overlays/spot", k8s.join("overlays/spot"))]
    {
        let Some(rendered) = kustomize(&dir) else { return };
        let file = work.path().join(format!("{}.yaml", variant.replace('/', "_")));
        std::fs::write(&file, &rendered).unwrap();
        // Strict: an unknown field (a typo) fails. 1.31 is where podFailurePolicy went GA.
        for version in ["1.31.0", "1.37.0"] {
            py.run(
                "import sys; from kubernetes_validate.__main__ import main; sys.exit(main())",
                &["--strict", "--quiet", "-k", version, &file.to_string_lossy()],
            )
            .unwrap_or_else(|e| {
                panic!("{variant} does not validate against Kubernetes {version}: {e}")
            });
        }
        let docs = yaml_documents(&py, &file);
        let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
        for kind in ["Namespace", "ServiceAccount", "ConfigMap", "Secret", "Service", "Job"] {
            assert!(kinds.contains(kind), "{variant}: no {kind} rendered");
        }
        let usages = k8s_usages(&docs, variant);
        assert_eq!(usages.len(), 2, "{variant}: expected the coordinator and worker Jobs");
        checker.assert_clean(&usages);

        // Workers dial the Service on the port the coordinator listens on.
        let service = find(&docs, "Service", "earthcatalog-coordinator");
        let port = service["spec"]["ports"][0]["port"].as_u64().unwrap();
        let listen = config_value(&docs, "earthcatalog-coordinator", "EARTHCATALOG_LISTEN");
        assert!(
            listen.ends_with(&format!(":{port}")),
            "{variant}: listens on {listen}, Service port {port}"
        );
        let dial = config_value(&docs, "earthcatalog-worker", "EARTHCATALOG_COORDINATOR");
        assert_eq!(dial, format!("http://earthcatalog-coordinator:{port}"), "{variant}");

        // A work queue: parallelism is the fleet, completions unset, grace above the drain.
        let workers = &find(&docs, "Job", "earthcatalog-worker")["spec"];
        assert!(workers["parallelism"].as_u64().unwrap() >= 1);
        assert!(
            workers["completions"].is_null(),
            "{variant}: worker Job must leave completions unset"
        );
        let drain: u64 = config_value(&docs, "earthcatalog-worker", "EARTHCATALOG_DRAIN_SECONDS")
            .parse()
            .unwrap();
        let grace = workers["template"]["spec"]["terminationGracePeriodSeconds"].as_u64().unwrap();
        assert!(grace > drain, "{variant}: grace {grace}s must exceed the drain {drain}s");

        // The coordinator's gRPC health probes hit its port; a finished-with-failures run
        // (exit 3) is not restarted.
        let coordinator = &find(&docs, "Job", "earthcatalog-coordinator")["spec"];
        let container = &coordinator["template"]["spec"]["containers"][0];
        for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
            assert_eq!(container[probe]["grpc"]["port"].as_u64(), Some(port), "{variant}: {probe}");
        }
        let rules = coordinator["podFailurePolicy"]["rules"].as_array().unwrap();
        assert!(
            rules.iter().any(|r| r["action"] == "FailJob"
                && r["onExitCodes"]["values"] == serde_json::json!([3])),
            "{variant}: exit code 3 must fail the coordinator Job"
        );
        if variant == "overlays/spot" {
            let spec = &workers["template"]["spec"];
            assert!(spec["tolerations"].as_array().is_some_and(|t| !t.is_empty()));
            assert!(spec["affinity"]["nodeAffinity"].is_object());
        }
    }
}

/// The launch templates' user data (with their `Fn::Sub` variables) as JSON text, per role.
const CFN_USER_DATA: &str = r#"
import json, sys
from cfnlint.decode import decode
template, errors = decode(sys.argv[1])
if errors:
    raise SystemExit("\n".join(str(e) for e in errors))
def text(resource):
    sub = template["Resources"][resource]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
    return sub if isinstance(sub, str) else sub[0] + "\n" + json.dumps(sub[1])
print(json.dumps({"coordinator": text("CoordinatorLaunchTemplate"), "worker": text("WorkerLaunchTemplate")}))
"#;

#[test]
fn the_cloudformation_template_passes_cfn_lint_and_its_user_data_uses_accepted_settings() {
    let Some(py) = python_with("deploy_manifests cfn", "cfnlint") else { return };
    let template = deploy_dir().join("ec2/earthcatalog-spot.yaml");
    let t = template.to_string_lossy();
    py.run("import sys; from cfnlint.runner import main; sys.exit(main())", &[&t])
        .unwrap_or_else(|e| panic!("cfn-lint rejects {t}: {e}"));
    let user_data = py.run_json(CFN_USER_DATA, &[&t]).unwrap();
    let mut usages = Vec::new();
    for (role, program) in [("coordinator", vec![CLI, "coordinator"]), ("worker", vec![WORKER])] {
        let text = user_data[role].as_str().unwrap();
        // What systemd runs (other lines name the container, which is called like the binary).
        let runs: Vec<_> = text
            .lines()
            .filter(|l| l.starts_with("ExecStart="))
            .filter_map(|l| {
                program_of(&l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            })
            .collect();
        let names: Vec<String> = runs.iter().map(|(p, _)| p.join(" ")).collect();
        assert_eq!(
            names,
            [program.join(" ")],
            "{role} user data must start exactly `{}` (ExecStart=)",
            program.join(" ")
        );
        let (program, flags) = runs.into_iter().next().unwrap();
        usages.push(Usage {
            place: format!("{t} {role} user data"),
            program,
            flags,
            env: env_names_in(text),
        });
        assert!(text.contains("50051"), "{role} user data must use the gRPC port 50051");
    }
    assert!(
        usages[1].env.iter().any(|e| e == "EARTHCATALOG_SPOT"),
        "workers on spot instances must watch for interruption notices"
    );
    Checker::new().assert_clean(&usages);

    // The coordinator sizes the worker group: it is told the group's name, may set that
    // group's desired capacity and nothing else's, and the workers may not.
    let scaling = py.run_json(CFN_SCALING, &[&t]).unwrap();
    let group = scaling["group"].as_str().unwrap();
    let coordinator = user_data["coordinator"].as_str().unwrap();
    let start = coordinator.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    let tokens: Vec<&str> = start.split_whitespace().collect();
    let at = tokens.iter().position(|t| *t == "--scale-asg").expect("--scale-asg on ExecStart");
    assert_eq!(tokens.get(at + 1).copied(), Some(group), "the flag names the worker group");
    let set = |role: &str| -> Vec<String> {
        scaling[role]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["actions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a == "autoscaling:SetDesiredCapacity")
            })
            .flat_map(|s| strings(&s["resources"]))
            .collect()
    };
    let granted = set("CoordinatorRole");
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert!(granted[0].ends_with(&format!(":autoScalingGroupName/{group}")), "{granted:?}");
    assert!(set("WorkerRole").is_empty(), "workers must not size their own group");
    for s in scaling["CoordinatorRole"].as_array().unwrap() {
        let actions = strings(&s["actions"]);
        assert!(
            actions.iter().all(|a| !a.starts_with("autoscaling:")
                || ["autoscaling:SetDesiredCapacity", "autoscaling:DescribeAutoScalingGroups"]
                    .contains(&a.as_str())),
            "the coordinator gets no other Auto Scaling right: {actions:?}"
        );
    }
}

/// The worker group's name and, per role, the Auto Scaling statements of its inline policies
/// (`Fn::Sub` strings as written).
const CFN_SCALING: &str = r#"
import json, sys
from cfnlint.decode import decode
template, errors = decode(sys.argv[1])
if errors:
    raise SystemExit("\n".join(str(e) for e in errors))
res = template["Resources"]
def text(v):
    if isinstance(v, dict) and "Fn::Sub" in v:
        v = v["Fn::Sub"]
        return v if isinstance(v, str) else v[0]
    return v if isinstance(v, str) else json.dumps(v)
def listed(v):
    return v if isinstance(v, list) else [v]
out = {"group": text(res["WorkerGroup"]["Properties"]["AutoScalingGroupName"])}
for role in ["CoordinatorRole", "WorkerRole"]:
    statements = []
    for policy in res[role]["Properties"].get("Policies", []):
        for st in policy["PolicyDocument"]["Statement"]:
            actions = [str(a) for a in listed(st["Action"])]
            if any(a.startswith("autoscaling:") for a in actions):
                statements.append({"actions": actions, "resources": [text(r) for r in listed(st["Resource"])]})
    out[role] = statements
print(json.dumps(out))
"#;

#[test]
fn the_dockerfile_builds_and_ships_both_binaries_and_runs_one_of_them() {
    let path = deploy_dir().join("Dockerfile");
    let text = std::fs::read_to_string(&path).unwrap();
    let names: BTreeSet<String> = [binaries::earthcatalog(), binaries::worker()]
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let built: BTreeSet<String> = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "--bin")
        .map(|w| w[1].to_string())
        .collect();
    assert_eq!(built, names, "{}: `cargo build --bin` must name both binaries", path.display());
    assert!(
        text.contains("--release --locked"),
        "{}: release build from Cargo.lock",
        path.display()
    );
    let copy = text
        .lines()
        .find(|l| l.starts_with("COPY --from=builder"))
        .expect("a COPY from the builder");
    for n in &names {
        assert!(copy.contains(&format!("/{n}")), "{}: the runtime image lacks {n}", path.display());
    }
    assert!(text.lines().any(|l| l.starts_with("USER ") && !l.contains("root")), "non-root user");
    // Bases are build arguments (a mirror, a digest, or none pulled at all).
    let bases: Vec<&str> = text.lines().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(bases, ["FROM ${BUILDER_IMAGE} AS builder", "FROM ${RUNTIME_IMAGE} AS runtime"]);
    // The image scripts/build-images.sh makes without a registry runs the same way.
    let script = std::fs::read_to_string(deploy_dir().join("../scripts/build-images.sh")).unwrap();
    for key in ["USER ", "WORKDIR ", "CMD ", "EXPOSE "] {
        let line = text.lines().rfind(|l| l.starts_with(key)).unwrap();
        assert!(script.contains(&format!("'{line}'")), "build-images.sh lacks '{line}'");
    }
    assert!(!text.lines().any(|l| l.starts_with("ENTRYPOINT")), "the command names the binary");
    let cmd = text.lines().find(|l| l.starts_with("CMD ")).expect("a CMD");
    let cmd: Vec<String> =
        serde_json::from_str(cmd.trim_start_matches("CMD ")).expect("exec-form CMD");
    let (program, flags) = program_of(&cmd).expect("CMD runs an earthcatalog binary");
    let usage =
        Usage { place: path.display().to_string(), program, flags, env: env_names_in(&text) };
    Checker::new().assert_clean(&[usage]);
}

/// Renders one kustomization of a copy of deploy/k8s (with the example token in place).
fn render_k8s(py: &Python, work: &Path, variant: &str) -> Option<(PathBuf, Vec<Value>)> {
    let k8s = work.join("k8s");
    if !k8s.exists() {
        copy_dir(&deploy_dir().join("k8s"), &k8s);
        std::fs::copy(k8s.join("base/token.example"), k8s.join("base/token")).unwrap();
    }
    let rendered = kustomize(&k8s.join(variant))?;
    let file = work.join(format!("{}.yaml", variant.replace('/', "_")));
    std::fs::write(&file, &rendered).unwrap();
    let docs = yaml_documents(py, &file);
    Some((file, docs))
}

/// Validates `docs` strictly against Kubernetes 1.31 and 1.37, as the base is.
fn validate_k8s(py: &Python, work: &Path, name: &str, docs: &[Value]) {
    let file = work.join(format!("{name}.json"));
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": docs});
    std::fs::write(&file, list.to_string()).unwrap();
    for version in ["1.31.0", "1.37.0"] {
        py.run(
            "import sys; from kubernetes_validate.__main__ import main; sys.exit(main())",
            &["--strict", "--quiet", "-k", version, &file.to_string_lossy()],
        )
        .unwrap_or_else(|e| panic!("{name} does not validate against Kubernetes {version}: {e}"));
    }
}

#[test]
fn the_keda_overlay_scales_the_base_worker_pod_on_the_workers_wanted_and_pods_are_scraped() {
    let Some(py) = python_with("deploy_manifests keda", "kubernetes_validate") else { return };
    let work = tempfile::tempdir().unwrap();
    let Some((_, base)) = render_k8s(&py, work.path(), ".") else { return };
    let Some((_, keda)) = render_k8s(&py, work.path(), "overlays/keda") else { return };

    // Both pods are scraped on the port their metrics listen on.
    for (job, config) in [
        ("earthcatalog-coordinator", "earthcatalog-coordinator"),
        ("earthcatalog-worker", "earthcatalog-worker"),
    ] {
        let pod = &find(&base, "Job", job)["spec"]["template"];
        let annotations = &pod["metadata"]["annotations"];
        assert_eq!(annotations["prometheus.io/scrape"], "true", "{job}");
        let listen = config_value(&base, config, "EARTHCATALOG_METRICS_LISTEN");
        let port = annotations["prometheus.io/port"].as_str().unwrap();
        assert!(
            listen.ends_with(&format!(":{port}")),
            "{job}: metrics on {listen}, scraped on {port}"
        );
        let ports = &pod["spec"]["containers"][0]["ports"];
        assert!(
            ports.as_array().unwrap().iter().any(|p| p["containerPort"]
                .as_u64()
                .map(|n| n.to_string())
                .as_deref()
                == Some(port)),
            "{job}: container port {port} declared"
        );
    }

    // The overlay: the fixed worker Job replaced by a ScaledJob running the same pod.
    assert!(
        !keda.iter().any(|d| d["kind"] == "Job" && d["metadata"]["name"] == "earthcatalog-worker"),
        "the fixed-size worker Job is gone"
    );
    let scaled = find(&keda, "ScaledJob", "earthcatalog-worker");
    assert_eq!(scaled["apiVersion"], "keda.sh/v1alpha1");
    assert_eq!(scaled["metadata"]["namespace"], "earthcatalog");
    let target = &scaled["spec"]["jobTargetRef"];
    let base_worker = &find(&base, "Job", "earthcatalog-worker")["spec"];
    assert_eq!(
        target["template"], base_worker["template"],
        "the ScaledJob runs the base worker pod"
    );
    assert_eq!(target["podFailurePolicy"], base_worker["podFailurePolicy"]);
    // KEDA follows the coordinator's scaling rule: one Job per worker wanted, the whole fleet
    // (not a backlog beside the running Jobs), within the rule's maximum, at its slots.
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "prometheus");
    let query = trigger["metadata"]["query"].as_str().unwrap();
    assert!(query.contains("earthcatalog_workers_wanted{"), "{query}");
    assert_eq!(trigger["metadata"]["threshold"], "1", "one Job per worker wanted");
    assert_eq!(scaled["spec"]["scalingStrategy"]["strategy"], "default");
    let scale_max = config_value(&keda, "earthcatalog-coordinator", "EARTHCATALOG_SCALE_MAX");
    assert_eq!(
        scaled["spec"]["maxReplicaCount"].as_u64().map(|n| n.to_string()).as_deref(),
        Some(scale_max)
    );
    assert_eq!(
        config_value(&keda, "earthcatalog-coordinator", "EARTHCATALOG_SCALE_SLOTS"),
        config_value(&keda, "earthcatalog-worker", "EARTHCATALOG_WORKER_SLOTS"),
        "the rule counts the slots each worker pod has"
    );

    // Everything else validates as Kubernetes, and so does the Job each scale step creates.
    let builtin: Vec<Value> = keda.iter().filter(|d| d["kind"] != "ScaledJob").cloned().collect();
    let job = serde_json::json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "earthcatalog-worker-scaled", "namespace": "earthcatalog"},
        "spec": target,
    });
    let mut docs = builtin;
    docs.push(job);
    validate_k8s(&py, work.path(), "keda", &docs);
}

#[test]
fn the_grafana_dashboard_is_an_importable_prometheus_dashboard() {
    let path = deploy_dir().join("grafana/earthcatalog.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(
        dash["__inputs"][0]["pluginId"], "prometheus",
        "asks for a Prometheus source on import"
    );
    let panels = dash["panels"].as_array().unwrap();
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");
    for p in panels {
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no query");
        for t in targets {
            let expr = t["expr"].as_str().unwrap();
            assert!(expr.contains("earthcatalog_"), "{title}: {expr}");
            assert_eq!(expr.matches('(').count(), expr.matches(')').count(), "{title}: {expr}");
        }
        let pos = &p["gridPos"];
        assert!(
            pos["x"].as_u64().unwrap() + pos["w"].as_u64().unwrap() <= 24,
            "{title}: fits the grid"
        );
    }
}
