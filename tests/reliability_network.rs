//! Network faults between a lazy mount and its registry: each fault kind of the fault proxy,
//! then a seeded random mix, with concurrent readers checked byte for byte against the
//! python image's tar. A read must return the right bytes or EIO within the deadline, and
//! once the faults stop, the same reads must succeed without a remount. The last test puts
//! `lazypull serve` behind containerd and checks that containerd's snapshot calls keep
//! answering while the proxy injects faults.
//!
//! `LAZYPULL_RELIABILITY_REPORT=DIR` writes each test's figures as JSON into DIR (see
//! docs/reliability.md); `LAZYPULL_FAULT_SEED` changes the seed of the random mix.

mod mount_util;
mod reliability_support;
mod serve_util;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use lazypull_testkit::containerd::Containerd;
use lazypull_testkit::faultproxy::{Fault, FaultPlan, FaultProxy, ProxyOptions, Rule, Stall};
use lazypull_testkit::registry::Registry;
use lazypull_testkit::{Prereq, require_or_skip};
use mount_util::Mount;
use reliability_support::{
    ExpectedFile, JobSource, ReadLimits, Tally, injected_text, jobs_for, recover, run_reads,
    top_layer_files, write_report,
};
use serde_json::{Value, json};
use serve_util::{SNAPSHOTTER, Stack, converted_python, tail};

/// `--read-timeout` of the mounts, in seconds.
const READ_TIMEOUT_SECS: u64 = 3;

/// One read can wait for two read timeouts in a row, because the kernel may send a 128 KiB
/// read as two FUSE requests (reads under endless stalls took 6.0 s). Three more seconds
/// cover scheduling on a loaded 2-core machine, where the three tests run in parallel.
const DEADLINE: Duration = Duration::from_secs(2 * READ_TIMEOUT_SECS + 3);

/// A finite stall: shorter than the request timeout, so the request still succeeds.
const SHORT_STALL: Duration = Duration::from_millis(500);

/// How long re-reads after the faults stop may take before the test fails.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);

/// Length of the random mix.
const MIX_DURATION: Duration = Duration::from_secs(20);

/// Files read per fault kind.
const FILES_PER_KIND: usize = 10;

const REPOSITORY: &str = "python-esgz:latest";

macro_rules! require_prerequisites {
    () => {
        require_or_skip!(
            Prereq::Root,
            Prereq::Fuse,
            Prereq::Overlayfs,
            Prereq::Binary("skopeo"),
            Prereq::Binary("docker-registry")
        )
    };
}

/// Files of the image's top layer, 4 KiB to 1 MiB, with their content.
fn pool() -> Arc<Vec<ExpectedFile>> {
    static POOL: OnceLock<Arc<Vec<ExpectedFile>>> = OnceLock::new();
    POOL.get_or_init(|| {
        Arc::new(top_layer_files(4096, 1 << 20, 2).expect("python image top layer reads"))
    })
    .clone()
}

fn registry_with_python() -> Registry {
    let registry = Registry::start().expect("registry starts");
    registry
        .push_oci_layout(converted_python(), "latest", REPOSITORY)
        .expect("push succeeds");
    registry
}

/// Mount options that make every read go to the network and fail fast.
fn mount_args() -> Vec<String> {
    [
        "--no-prefetch",
        "--no-disk-cache",
        "--readahead-kib",
        "0",
        "--read-timeout",
        &READ_TIMEOUT_SECS.to_string(),
        "--request-timeout",
        "2",
        "--max-retries",
        "3",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect()
}

fn mount_through(proxy: &FaultProxy, extra: &[&str]) -> Mount {
    let reference = format!("{}/{REPOSITORY}", proxy.host());
    let mut args = mount_args();
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Mount::start(&reference, &args).expect("mount through the fault proxy succeeds")
}

fn limits(readers: usize) -> ReadLimits {
    ReadLimits {
        readers,
        deadline: DEADLINE,
        stop_at: None,
    }
}

/// One fault kind of the per-kind test.
struct Case {
    name: &'static str,
    options: ProxyOptions,
    rule: Rule,
}

fn cases() -> Vec<Case> {
    let plain = ProxyOptions::default();
    let token = ProxyOptions {
        token_auth: true,
        ..ProxyOptions::default()
    };
    let storage = ProxyOptions {
        storage_redirect: true,
        ..ProxyOptions::default()
    };
    let blobs = |fault| Rule::blobs(fault).every(2);
    vec![
        Case {
            name: "reset",
            options: plain.clone(),
            rule: blobs(Fault::Reset),
        },
        Case {
            name: "stall before headers 0.5 s",
            options: plain.clone(),
            rule: blobs(Fault::StallHeaders(Stall::For(SHORT_STALL))),
        },
        Case {
            name: "stall before headers forever",
            options: plain.clone(),
            rule: blobs(Fault::StallHeaders(Stall::Forever)),
        },
        Case {
            name: "stall mid-body 0.5 s",
            options: plain.clone(),
            rule: blobs(Fault::StallBody(Stall::For(SHORT_STALL))),
        },
        Case {
            name: "stall mid-body forever",
            options: plain.clone(),
            rule: blobs(Fault::StallBody(Stall::Forever)),
        },
        Case {
            name: "500",
            options: plain.clone(),
            rule: blobs(Fault::Status(500)),
        },
        Case {
            name: "502",
            options: plain.clone(),
            rule: blobs(Fault::Status(502)),
        },
        Case {
            name: "503",
            options: plain.clone(),
            rule: blobs(Fault::Status(503)),
        },
        Case {
            name: "429 with Retry-After 1",
            options: plain.clone(),
            rule: blobs(Fault::TooManyRequests {
                retry_after_secs: 1,
            }),
        },
        Case {
            name: "truncated body",
            options: plain.clone(),
            rule: blobs(Fault::Truncate),
        },
        Case {
            name: "flipped byte",
            options: plain.clone(),
            rule: blobs(Fault::FlipBytes),
        },
        Case {
            name: "range answered with 200",
            options: plain.clone(),
            rule: blobs(Fault::RangeAsFull).ranged(),
        },
        Case {
            name: "wrong Content-Range",
            options: plain.clone(),
            rule: blobs(Fault::WrongContentRange).ranged(),
        },
        Case {
            name: "token expired, 401",
            options: token.clone(),
            rule: blobs(Fault::ExpireToken { status: 401 }),
        },
        Case {
            name: "token expired, 403",
            options: token,
            rule: blobs(Fault::ExpireToken { status: 403 }),
        },
        Case {
            name: "signed URL expired",
            options: storage,
            rule: blobs(Fault::ExpireSignedUrl),
        },
    ]
}

/// Figures of one batch of reads under one fault plan.
struct Figures {
    name: String,
    injected: BTreeMap<String, u64>,
    requests: u64,
    under_fault: Tally,
    recovery: Option<Duration>,
    after: Tally,
}

impl Figures {
    fn to_json(&self) -> Value {
        json!({
            "fault": self.name,
            "injected": self.injected,
            "proxy_requests": self.requests,
            "under_fault": self.under_fault.to_json(),
            "recovery_ms": self.recovery.map(|recovery| recovery.as_millis() as u64),
            "after_clear": self.after.to_json(),
        })
    }

    fn table_row(&self) -> String {
        let t = &self.under_fault;
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.1} | {} |",
            self.name,
            injected_text(&self.injected),
            t.attempted,
            t.correct,
            t.eio,
            t.wrong + t.other_errors,
            t.hung,
            t.max_read.as_secs_f64(),
            self.recovery.map_or("none".to_owned(), |recovery| format!(
                "{:.2}",
                recovery.as_secs_f64()
            )),
        )
    }

    fn check(&self) {
        let t = &self.under_fault;
        assert_eq!(t.wrong, 0, "{}: wrong bytes: {:?}", self.name, t.details);
        assert_eq!(
            t.other_errors, 0,
            "{}: errors other than EIO: {:?}",
            self.name, t.details
        );
        assert_eq!(
            t.hung, 0,
            "{}: reads past {DEADLINE:?}: {:?}",
            self.name, t.details
        );
        assert!(
            self.recovery.is_some(),
            "{}: reads still fail {RECOVERY_LIMIT:?} after the faults stopped: {:?}",
            self.name,
            self.after.details
        );
        assert!(
            self.injected.values().sum::<u64>() > 0,
            "{}: the proxy injected no fault, so the case tested nothing",
            self.name
        );
    }
}

const TABLE_HEADER: &str = "| fault | injected | reads | correct | EIO | wrong | hung | slowest read (s) | recovery (s) |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |";

/// Reads `files` of the pool under `plan`, then clears the plan and re-reads them.
fn run_case(
    name: &str,
    proxy: &FaultProxy,
    mount: &Mount,
    files: &[usize],
    plan: FaultPlan,
) -> Figures {
    let pool = pool();
    let jobs = jobs_for(files, &pool);
    let before = proxy.handle().requests();
    proxy.set_faults(plan);
    let under_fault = run_reads(
        mount.path(),
        &pool,
        JobSource::list(jobs.clone()),
        limits(4),
    );
    let injected = proxy.handle().injected();
    let requests = proxy.handle().requests() - before;
    proxy.clear();
    let (recovery, after) = recover(mount.path(), &pool, &jobs, limits(4), RECOVERY_LIMIT);
    Figures {
        name: name.to_owned(),
        injected,
        requests,
        under_fault,
        recovery,
        after,
    }
}

#[test]
fn each_fault_kind_gives_right_bytes_or_eio() {
    require_prerequisites!();
    let registry = registry_with_python();
    let pool = pool();
    let cases = cases();
    assert!(
        pool.len() >= cases.len() * FILES_PER_KIND,
        "{} files in the pool, {} needed",
        pool.len(),
        cases.len() * FILES_PER_KIND
    );
    let report_dir = tempfile::tempdir().unwrap();
    let mut figures = Vec::new();
    // One proxy and one mount per set of proxy options. Each case reads files that no other
    // case read, so its reads miss every cache and reach the proxy.
    let mut current: Option<(ProxyOptions, FaultProxy, Mount)> = None;
    for (n, case) in cases.iter().enumerate() {
        if current
            .as_ref()
            .is_none_or(|(options, _, _)| *options != case.options)
        {
            drop(current.take());
            let proxy = FaultProxy::start(&registry.host(), case.options.clone()).unwrap();
            let mount = mount_through(&proxy, &[]);
            current = Some((case.options.clone(), proxy, mount));
        }
        let (_, proxy, mount) = current.as_ref().unwrap();
        // A fresh counter per case.
        let injected_before = proxy.handle().injected();
        let files: Vec<usize> = (0..FILES_PER_KIND).map(|i| i * cases.len() + n).collect();
        let mut result = run_case(
            case.name,
            proxy,
            mount,
            &files,
            FaultPlan::Rules(vec![case.rule.clone()]),
        );
        for (name, count) in injected_before {
            if let Some(total) = result.injected.get_mut(&name) {
                *total -= count;
            }
        }
        result.injected.retain(|_, count| *count > 0);
        eprintln!("{}", result.table_row());
        figures.push(result);
    }
    drop(current);

    let section = json!({
        "read_timeout_s": READ_TIMEOUT_SECS,
        "deadline_s": DEADLINE.as_secs(),
        "readers": 4,
        "cases": figures.iter().map(Figures::to_json).collect::<Vec<_>>(),
    });
    write_report("per_fault_kind", &section, report_dir.path());
    println!("{TABLE_HEADER}");
    for result in &figures {
        println!("{}", result.table_row());
    }
    for result in &figures {
        result.check();
    }
}

/// Returns every fault kind, finite and endless stalls included.
fn every_fault() -> Vec<Fault> {
    vec![
        Fault::Reset,
        Fault::StallHeaders(Stall::For(SHORT_STALL)),
        Fault::StallHeaders(Stall::Forever),
        Fault::StallBody(Stall::For(SHORT_STALL)),
        Fault::StallBody(Stall::Forever),
        Fault::Status(500),
        Fault::Status(502),
        Fault::Status(503),
        Fault::TooManyRequests {
            retry_after_secs: 1,
        },
        Fault::Truncate,
        Fault::FlipBytes,
        Fault::RangeAsFull,
        Fault::WrongContentRange,
        Fault::ExpireToken { status: 401 },
        Fault::ExpireToken { status: 403 },
        Fault::ExpireSignedUrl,
    ]
}

#[test]
fn random_fault_mix_gives_right_bytes_or_eio() {
    require_prerequisites!();
    let seed: u64 = std::env::var("LAZYPULL_FAULT_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(6);
    let registry = registry_with_python();
    let pool = pool();
    let options = ProxyOptions {
        token_auth: true,
        storage_redirect: true,
        ..ProxyOptions::default()
    };
    let proxy = FaultProxy::start(&registry.host(), options).unwrap();
    // A 1 MiB memory cache, so repeated reads keep going to the network.
    let mount = mount_through(&proxy, &["--memory-cache-mib", "1"]);
    let report_dir = tempfile::tempdir().unwrap();

    proxy.set_faults(FaultPlan::Random {
        seed,
        rate: 0.3,
        faults: every_fault(),
        path_contains: Some("/blobs/".into()),
    });
    let started = Instant::now();
    let mix = ReadLimits {
        readers: 8,
        deadline: DEADLINE,
        stop_at: Some(started + MIX_DURATION),
    };
    let under_fault = run_reads(
        mount.path(),
        &pool,
        JobSource::Random(std::sync::Mutex::new(seed)),
        mix,
    );
    let injected = proxy.handle().injected();
    let requests = proxy.handle().requests();
    proxy.clear();

    // Recovery: the first 64 files of the pool, each from the start.
    let files: Vec<usize> = (0..64.min(pool.len())).collect();
    let jobs = jobs_for(&files, &pool);
    let (recovery, after) = recover(mount.path(), &pool, &jobs, limits(8), RECOVERY_LIMIT);
    let figures = Figures {
        name: format!(
            "random mix, seed {seed}, rate 0.3, 8 readers, {} s",
            MIX_DURATION.as_secs()
        ),
        injected,
        requests,
        under_fault,
        recovery,
        after,
    };
    let section = json!({
        "seed": seed,
        "rate": 0.3,
        "readers": 8,
        "duration_s": MIX_DURATION.as_secs(),
        "read_timeout_s": READ_TIMEOUT_SECS,
        "deadline_s": DEADLINE.as_secs(),
        "mix": figures.to_json(),
    });
    write_report("random_mix", &section, report_dir.path());
    println!("{TABLE_HEADER}");
    println!("{}", figures.table_row());
    figures.check();
    assert!(
        figures.under_fault.correct > 0,
        "no read succeeded in the random mix: {:?}",
        figures.under_fault.details
    );
}

/// Runs `ctr ARGS` with a deadline; returns whether it succeeded and how long it took. A
/// call still running at the deadline is killed and counts as failed.
fn timed_ctr(
    containerd: &Containerd,
    args: &[&str],
    deadline: Duration,
) -> (bool, Duration, String) {
    let started = Instant::now();
    let mut child = match Command::new("ctr")
        .arg("--address")
        .arg(containerd.socket())
        .args(["--namespace", containerd.namespace()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(err) => {
            return (
                false,
                started.elapsed(),
                format!("ctr did not start: {err}"),
            );
        }
    };
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return (
                    false,
                    started.elapsed(),
                    format!("no answer within {deadline:?}"),
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(err) => return (false, started.elapsed(), err.to_string()),
        }
    }
    let elapsed = started.elapsed();
    match child.wait_with_output() {
        Ok(output) if output.status.success() => (
            true,
            elapsed,
            String::from_utf8_lossy(&output.stdout).into_owned(),
        ),
        Ok(output) => (
            false,
            elapsed,
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ),
        Err(err) => (false, elapsed, err.to_string()),
    }
}

/// Maximum time one `ctr snapshots` call may take while faults are injected.
const CTR_DEADLINE: Duration = Duration::from_secs(5);

/// Length of the containerd part.
const CONTAINERD_DURATION: Duration = Duration::from_secs(15);

#[test]
fn containerd_snapshot_calls_answer_under_faults() {
    require_or_skip!(
        Prereq::Root,
        Prereq::Fuse,
        Prereq::Overlayfs,
        Prereq::Binary("skopeo"),
        Prereq::Binary("docker-registry"),
        Prereq::Binary("containerd"),
        Prereq::Binary("ctr"),
        Prereq::Binary("ctr-remote")
    );
    let config = format!(
        "[prefetch]\nbackground = false\n[cache]\nmemory_bytes = 1048576\n[fetch]\nreadahead_bytes = 0\n[timeouts]\nread = \"{READ_TIMEOUT_SECS}s\"\n\
         [registry]\nrequest_timeout = \"2s\"\nmax_retries = 3\n"
    );
    let stack = Stack::start(&config).unwrap();
    stack
        .registry
        .push_oci_layout(converted_python(), "latest", REPOSITORY)
        .unwrap();
    // Tokens and storage redirects on, so every fault kind can apply.
    let options = ProxyOptions {
        token_auth: true,
        storage_redirect: true,
        ..ProxyOptions::default()
    };
    let proxy = FaultProxy::start(&stack.registry.host(), options).unwrap();
    let reference = format!("{}/{REPOSITORY}", proxy.host());
    stack.rpull(&reference);

    // Read through the layer mounts of the daemon, so the faults hit real fetches.
    let pool = pool();
    let layer_mounts: Vec<_> = lazypull_testkit::mounts::mounts_under(&stack.serve.root())
        .into_iter()
        .filter(|info| info.fs_type.starts_with("fuse"))
        .map(|info| info.mount_point)
        .collect();
    let top = layer_mounts
        .iter()
        .find(|dir| dir.join(&pool[0].path).is_file())
        .unwrap_or_else(|| {
            panic!(
                "no layer mount of {} holds {}: {layer_mounts:?}\n{}",
                stack.serve.root().display(),
                pool[0].path.display(),
                tail(&stack.serve.log(), 40)
            )
        })
        .clone();
    let report_dir = tempfile::tempdir().unwrap();

    proxy.set_faults(FaultPlan::Random {
        seed: 11,
        rate: 0.5,
        faults: every_fault(),
        path_contains: Some("/blobs/".into()),
    });
    let started = Instant::now();
    let readers = {
        let (top, pool) = (top.clone(), pool.clone());
        std::thread::spawn(move || {
            run_reads(
                &top,
                &pool,
                JobSource::Random(std::sync::Mutex::new(11)),
                ReadLimits {
                    readers: 4,
                    deadline: DEADLINE,
                    stop_at: Some(started + CONTAINERD_DURATION),
                },
            )
        })
    };

    let mut calls = 0u64;
    let mut failures = Vec::new();
    let mut slowest = Duration::ZERO;
    while started.elapsed() < CONTAINERD_DURATION {
        let (ok, elapsed, listing) = timed_ctr(
            &stack.containerd,
            &["snapshots", "--snapshotter", SNAPSHOTTER, "ls"],
            CTR_DEADLINE,
        );
        calls += 1;
        slowest = slowest.max(elapsed);
        if !ok {
            failures.push(format!("ls: {listing}"));
            continue;
        }
        let key = listing
            .lines()
            .skip(1)
            .find_map(|line| line.split_whitespace().next())
            .unwrap_or_default()
            .to_owned();
        for args in [
            vec!["snapshots", "--snapshotter", SNAPSHOTTER, "usage"],
            vec![
                "snapshots",
                "--snapshotter",
                SNAPSHOTTER,
                "info",
                key.as_str(),
            ],
        ] {
            let (ok, elapsed, output) = timed_ctr(&stack.containerd, &args, CTR_DEADLINE);
            calls += 1;
            slowest = slowest.max(elapsed);
            if !ok || elapsed > CTR_DEADLINE {
                failures.push(format!("{}: {output}", args[3]));
            }
        }
    }
    let reads = readers.join().expect("reader watchdog thread returns");
    let injected = proxy.handle().injected();
    proxy.clear();

    let section = json!({
        "duration_s": CONTAINERD_DURATION.as_secs(),
        "ctr_deadline_s": CTR_DEADLINE.as_secs(),
        "ctr_calls": calls,
        "ctr_failures": failures.len(),
        "slowest_ctr_call_ms": slowest.as_millis() as u64,
        "injected": injected,
        "reads": reads.to_json(),
    });
    write_report("containerd", &section, report_dir.path());
    println!(
        "| ctr calls | failed or late | slowest call (s) | injected | reads | correct | EIO | wrong | hung |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    println!(
        "| {calls} | {} | {:.2} | {} | {} | {} | {} | {} | {} |",
        failures.len(),
        slowest.as_secs_f64(),
        injected_text(&injected),
        reads.attempted,
        reads.correct,
        reads.eio,
        reads.wrong + reads.other_errors,
        reads.hung
    );
    assert!(
        calls >= 3,
        "only {calls} ctr calls in {CONTAINERD_DURATION:?}"
    );
    assert!(
        failures.is_empty(),
        "ctr calls failed or were late: {failures:?}\n{}",
        tail(&stack.serve.log(), 40)
    );
    assert!(
        injected.values().sum::<u64>() > 0,
        "the proxy injected no fault"
    );
    assert_eq!(reads.wrong, 0, "wrong bytes: {:?}", reads.details);
    assert_eq!(
        reads.other_errors, 0,
        "errors other than EIO: {:?}",
        reads.details
    );
    assert_eq!(
        reads.hung, 0,
        "reads past {DEADLINE:?}: {:?}",
        reads.details
    );
}
