//! Shared parts of the reliability tests: reference file contents from the python image's
//! tar, concurrent readers with a watchdog, the tally of outcomes, and the figures report.

#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lazypull_testkit::image::{PYTHON_IMAGE_TAG, python_image};
use serde_json::{Value, json};

/// errno of EIO.
pub const EIO: i32 = libc::EIO;

/// Bytes one read asks for: at most two FUSE read requests of the default 128 KiB.
pub const READ_LENGTH: usize = 128 * 1024;

/// A file of the image with the content GNU tar would extract.
#[derive(Debug)]
pub struct ExpectedFile {
    /// Path relative to the image root.
    pub path: PathBuf,
    /// Content from the layer tar.
    pub bytes: Vec<u8>,
}

/// Regular files of the python image's top layer between `min` and `max` bytes, sorted by
/// path, every `step`-th of them. The top layer's files are what a mount shows.
pub fn top_layer_files(min: u64, max: u64, step: usize) -> anyhow::Result<Vec<ExpectedFile>> {
    let layout = python_image()?;
    let blobs = layer_blobs(&layout)?;
    let top = blobs
        .last()
        .ok_or_else(|| anyhow::anyhow!("the python image has no layer"))?;
    let decoder = flate2::read::MultiGzDecoder::new(std::fs::File::open(top)?);
    let mut archive = tar::Archive::new(decoder);
    let mut files = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        let size = entry.header().size()?;
        let path = entry.path()?.into_owned();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
        if entry.header().entry_type() != tar::EntryType::Regular
            || !(min..=max).contains(&size)
            || name.is_some_and(|name| name.starts_with(".wh."))
        {
            continue;
        }
        let mut bytes = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut bytes)?;
        files.push(ExpectedFile { path, bytes });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    // A path listed twice in one tar shows its last entry; keep that one.
    files.dedup_by(|later, earlier| {
        let same = later.path == earlier.path;
        if same {
            std::mem::swap(later, earlier);
        }
        same
    });
    Ok(files.into_iter().step_by(step.max(1)).collect())
}

fn layer_blobs(layout: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let index: Value = serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let entry = index["manifests"]
        .as_array()
        .and_then(|manifests| {
            manifests
                .iter()
                .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == PYTHON_IMAGE_TAG)
        })
        .ok_or_else(|| anyhow::anyhow!("no manifest tagged {PYTHON_IMAGE_TAG}"))?;
    let manifest: Value = serde_json::from_slice(&std::fs::read(blob(
        entry["digest"].as_str().unwrap_or_default(),
    ))?)?;
    Ok(manifest["layers"]
        .as_array()
        .map(|layers| {
            layers
                .iter()
                .map(|layer| blob(layer["digest"].as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default())
}

/// One read: `length` bytes at `offset` of file number `file`.
#[derive(Debug, Clone, Copy)]
pub struct ReadJob {
    pub file: usize,
    pub offset: u64,
}

/// Two reads per file: the start, and the last [`READ_LENGTH`] bytes.
pub fn jobs_for(files: &[usize], pool: &[ExpectedFile]) -> Vec<ReadJob> {
    let mut jobs = Vec::new();
    for &file in files {
        let size = pool[file].bytes.len() as u64;
        jobs.push(ReadJob { file, offset: 0 });
        let tail = size.saturating_sub(READ_LENGTH as u64) & !4095;
        if tail > 0 {
            jobs.push(ReadJob { file, offset: tail });
        }
    }
    jobs
}

/// What one read gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Correct,
    Eio,
    Wrong(String),
    OtherError(String),
}

/// Counts of read outcomes. A read is hung when it took longer than the deadline or had not
/// returned when the watchdog gave up on it; it is also counted by its outcome if it returned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    pub attempted: u64,
    pub correct: u64,
    pub eio: u64,
    pub wrong: u64,
    pub other_errors: u64,
    pub hung: u64,
    pub max_read: Duration,
    /// The first few wrong or unexpected outcomes, for failure messages.
    pub details: Vec<String>,
}

impl Tally {
    fn add(
        &mut self,
        path: &Path,
        job: ReadJob,
        outcome: Outcome,
        elapsed: Duration,
        deadline: Duration,
    ) {
        self.attempted += 1;
        self.max_read = self.max_read.max(elapsed);
        if elapsed > deadline {
            self.hung += 1;
            self.note(format!(
                "{} @{}: took {elapsed:?}",
                path.display(),
                job.offset
            ));
        }
        match outcome {
            Outcome::Correct => self.correct += 1,
            Outcome::Eio => self.eio += 1,
            Outcome::Wrong(detail) => {
                self.wrong += 1;
                self.note(format!("{} @{}: {detail}", path.display(), job.offset));
            }
            Outcome::OtherError(detail) => {
                self.other_errors += 1;
                self.note(format!("{} @{}: {detail}", path.display(), job.offset));
            }
        }
    }

    fn note(&mut self, detail: String) {
        if self.details.len() < 10 {
            self.details.push(detail);
        }
    }

    /// Adds the counts of `other`.
    pub fn merge(&mut self, other: &Tally) {
        self.attempted += other.attempted;
        self.correct += other.correct;
        self.eio += other.eio;
        self.wrong += other.wrong;
        self.other_errors += other.other_errors;
        self.hung += other.hung;
        self.max_read = self.max_read.max(other.max_read);
        self.details.extend(other.details.iter().cloned());
    }

    /// The counts as JSON.
    pub fn to_json(&self) -> Value {
        json!({
            "attempted": self.attempted,
            "correct": self.correct,
            "eio": self.eio,
            "wrong": self.wrong,
            "other_errors": self.other_errors,
            "hung": self.hung,
            "max_read_ms": self.max_read.as_millis() as u64,
        })
    }
}

/// Reads `length` bytes at `offset` of `path` and compares them with `expected`.
fn read_and_compare(path: &Path, offset: u64, expected: &[u8]) -> Outcome {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(err) if err.raw_os_error() == Some(EIO) => return Outcome::Eio,
        Err(err) => return Outcome::OtherError(format!("open failed: {err}")),
    };
    let end = (offset as usize + READ_LENGTH).min(expected.len());
    let want = &expected[offset as usize..end];
    let mut got = vec![0u8; want.len()];
    let mut filled = 0;
    while filled < got.len() {
        match file.read_at(&mut got[filled..], offset + filled as u64) {
            Ok(0) => {
                return Outcome::Wrong(format!(
                    "end of file after {filled} of {} bytes",
                    want.len()
                ));
            }
            Ok(n) => filled += n,
            Err(err) if err.raw_os_error() == Some(EIO) => return Outcome::Eio,
            Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
            Err(err) => return Outcome::OtherError(format!("read failed: {err}")),
        }
    }
    evict_page_cache(&file);
    match got.iter().zip(want).position(|(a, b)| a != b) {
        None => Outcome::Correct,
        Some(at) => Outcome::Wrong(format!("byte {} differs", offset as usize + at)),
    }
}

/// Drops the kernel's cached pages of `file`, so the next read of them reaches the mount.
fn evict_page_cache(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: the descriptor is open for the duration of the call; the advice changes no
    // memory of this process.
    let _ = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
}

/// Limits of one batch of reads.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    /// Concurrent reader threads.
    pub readers: usize,
    /// A read that takes longer counts as hung.
    pub deadline: Duration,
    /// No new read starts after this instant.
    pub stop_at: Option<Instant>,
}

/// Where reader threads take their next read from.
pub enum JobSource {
    /// Each job once, in order.
    List(Mutex<VecDeque<ReadJob>>),
    /// Random jobs (file and 4 KiB-aligned offset) from a seeded generator until `stop_at`.
    Random(Mutex<u64>),
}

impl JobSource {
    pub fn list(jobs: Vec<ReadJob>) -> Self {
        JobSource::List(Mutex::new(jobs.into()))
    }

    fn next(&self, pool: &[ExpectedFile]) -> Option<ReadJob> {
        match self {
            JobSource::List(jobs) => jobs.lock().unwrap().pop_front(),
            JobSource::Random(state) => {
                let mut state = state.lock().unwrap();
                let file = (next_random(&mut state) % pool.len() as u64) as usize;
                let pages = (pool[file].bytes.len() as u64).div_ceil(4096).max(1);
                let offset = (next_random(&mut state) % pages) * 4096;
                Some(ReadJob { file, offset })
            }
        }
    }
}

/// xorshift64*: enough to pick reads reproducibly.
fn next_random(state: &mut u64) -> u64 {
    let mut x = (*state).max(1);
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    x.wrapping_mul(0x2545_F491_4F6C_DD1D)
}

/// The read a reader thread is in, with its start, or `None` between reads.
type Busy = Option<(Instant, ReadJob)>;

/// Runs reads from `source` on `limits.readers` threads against the mount at `root`.
///
/// The calling thread is the watchdog: a read that has not returned `deadline` past its
/// start plus a grace of the same length is counted as hung and its thread is left behind,
/// so the test itself never waits on a stuck read.
pub fn run_reads(
    root: &Path,
    pool: &Arc<Vec<ExpectedFile>>,
    source: JobSource,
    limits: ReadLimits,
) -> Tally {
    let source = Arc::new(source);
    let (sender, results) = mpsc::channel::<(usize, ReadJob, Outcome, Duration)>();
    let busy: Arc<Mutex<Vec<Busy>>> = Arc::new(Mutex::new(vec![None; limits.readers]));
    let mut finished = Vec::new();
    for reader in 0..limits.readers {
        let (root, pool, source, sender, busy) = (
            root.to_path_buf(),
            pool.clone(),
            source.clone(),
            sender.clone(),
            busy.clone(),
        );
        let (done_sender, done) = mpsc::channel::<()>();
        finished.push(done);
        std::thread::spawn(move || {
            loop {
                if limits.stop_at.is_some_and(|stop| Instant::now() >= stop) {
                    break;
                }
                let Some(job) = source.next(&pool) else {
                    break;
                };
                let expected = &pool[job.file];
                let started = Instant::now();
                busy.lock().unwrap()[reader] = Some((started, job));
                let outcome =
                    read_and_compare(&root.join(&expected.path), job.offset, &expected.bytes);
                let elapsed = started.elapsed();
                busy.lock().unwrap()[reader] = None;
                if sender.send((reader, job, outcome, elapsed)).is_err() {
                    break;
                }
            }
            let _ = done_sender.send(());
        });
    }
    drop(sender);

    let mut tally = Tally::default();
    let give_up_after = limits.deadline * 2;
    let mut running: Vec<bool> = vec![true; limits.readers];
    let mut given_up: Vec<bool> = vec![false; limits.readers];
    loop {
        match results.recv_timeout(Duration::from_millis(100)) {
            Ok((reader, job, outcome, elapsed)) => {
                // A reader given up on as hung was counted already.
                if !given_up[reader] {
                    let path = pool[job.file].path.clone();
                    tally.add(&path, job, outcome, elapsed, limits.deadline);
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        for (reader, done) in finished.iter().enumerate() {
            if running[reader] && done.try_recv().is_ok() {
                running[reader] = false;
            }
        }
        // Give up on readers stuck in one read well past the deadline.
        let stuck: Vec<(usize, ReadJob, Duration)> = busy
            .lock()
            .unwrap()
            .iter()
            .enumerate()
            .filter_map(|(reader, slot)| {
                slot.and_then(|(started, job)| {
                    (started.elapsed() > give_up_after).then(|| (reader, job, started.elapsed()))
                })
            })
            .collect();
        for (reader, job, elapsed) in &stuck {
            if running[*reader] {
                running[*reader] = false;
                given_up[*reader] = true;
                tally.attempted += 1;
                tally.hung += 1;
                tally.note(format!(
                    "{} @{}: no answer after {elapsed:?}",
                    pool[job.file].path.display(),
                    job.offset
                ));
            }
        }
        if running.iter().all(|running| !running) {
            // Collect what the remaining senders already delivered.
            while let Ok((reader, job, outcome, elapsed)) = results.try_recv() {
                if !given_up[reader] {
                    let path = pool[job.file].path.clone();
                    tally.add(&path, job, outcome, elapsed, limits.deadline);
                }
            }
            break;
        }
    }
    tally
}

/// Re-reads `jobs` until every read is correct, at most `limit`. Returns the time from the
/// call until the first all-correct pass, or `None`, and the tally of the last pass.
pub fn recover(
    root: &Path,
    pool: &Arc<Vec<ExpectedFile>>,
    jobs: &[ReadJob],
    limits: ReadLimits,
    limit: Duration,
) -> (Option<Duration>, Tally) {
    let started = Instant::now();
    loop {
        let tally = run_reads(root, pool, JobSource::list(jobs.to_vec()), limits);
        if tally.correct == jobs.len() as u64 && tally.hung == 0 {
            return (Some(started.elapsed()), tally);
        }
        if started.elapsed() > limit {
            return (None, tally);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes `section` as `<name>.json` into the directory named by
/// `LAZYPULL_RELIABILITY_REPORT` (when set) and into `fallback`, and prints it.
pub fn write_report(name: &str, section: &Value, fallback: &Path) {
    let text = serde_json::to_string_pretty(section).unwrap_or_default();
    let mut targets = vec![fallback.to_path_buf()];
    if let Some(dir) = std::env::var_os("LAZYPULL_RELIABILITY_REPORT") {
        targets.push(PathBuf::from(dir));
    }
    for dir in targets {
        let path = dir.join(format!("{name}.json"));
        match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, &text)) {
            Ok(()) => eprintln!("reliability report written to {}", path.display()),
            Err(err) => eprintln!("failed to write {}: {err}", path.display()),
        }
    }
    println!("{name}: {text}");
}

/// Formats injected-fault counts as `name N, name N`.
pub fn injected_text(injected: &BTreeMap<String, u64>) -> String {
    injected
        .iter()
        .map(|(name, count)| format!("{name} {count}"))
        .collect::<Vec<_>>()
        .join(", ")
}
