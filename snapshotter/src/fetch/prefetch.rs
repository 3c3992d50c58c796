//! Prefetch of the prioritized range at open, then background fetch of everything else.
//!
//! One task per layer, owned by a [`Prefetcher`]; dropping the prefetcher (or calling
//! [`Prefetcher::cancel`]) stops it and every request it has in flight.
//!
//! - Prefetch fetches the chunks whose member starts before the prefetch end (the landmark's
//!   offset, or a configured size) in requests of `request_bytes`, `concurrency` at a time. It
//!   keeps a [`PriorityGuard`](crate::cache::PriorityGuard), like a demand read.
//! - Background fetch then walks the rest of the blob in requests of `background_request_bytes`
//!   with `background_concurrency` workers. A worker starts a request only after the priority
//!   gate has been idle for `background_quiet`, and abandons it (to retry later) as soon as a
//!   demand read or a prefetch starts. Chunks another caller is fetching are skipped.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use estargz::index::Chunk;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::config::PrefetchConfig;
use super::loader::{ChunkLoader, LoadOptions};
use estargz::range_plan::{MergeRule, plan_requests};
use super::stats::{LayerStats, Purpose};

/// Consecutive failed background requests after which a layer's background fetch stops.
const MAX_BACKGROUND_FAILURES: u32 = 3;

/// Progress of the prefetch phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefetchState {
    /// Still fetching.
    Running,
    /// Every chunk of the prefetch range is cached. `chunks` counts those that were not cached
    /// before.
    Done {
        /// Chunks fetched or read from disk by the prefetch.
        chunks: usize,
    },
    /// Finished, but some requests failed; demand reads fetch those chunks again.
    Failed {
        /// Chunks in the failed requests.
        failed_chunks: usize,
    },
    /// Stopped because the layer was closed.
    Cancelled,
}

/// Progress of background fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackgroundState {
    /// Not started yet (prefetch runs), or turned off.
    Idle,
    /// Fetching.
    Running,
    /// Walked the whole blob; chunks whose requests failed stay missing.
    Done,
    /// Stopped: the layer was closed or too many requests failed.
    Stopped,
}

/// Owner of a layer's prefetch and background task; see the module documentation.
#[derive(Debug)]
pub struct Prefetcher {
    cancel: CancellationToken,
    prefetch: watch::Receiver<PrefetchState>,
    background: watch::Receiver<BackgroundState>,
    background_enabled: bool,
    task: JoinHandle<()>,
}

impl Prefetcher {
    /// Starts the task: prefetch of the chunks starting before `prefetch_end`, then background
    /// fetch when `background` is true. Must be called inside a Tokio runtime.
    pub(crate) fn start(
        loader: Arc<ChunkLoader>,
        prefetch_end: u64,
        background: bool,
        config: PrefetchConfig,
    ) -> Self {
        let cancel = CancellationToken::new();
        let (prefetch_tx, prefetch) = watch::channel(PrefetchState::Running);
        let (background_tx, background_rx) = watch::channel(BackgroundState::Idle);
        let token = cancel.clone();
        let task = tokio::spawn(async move {
            let outcome = tokio::select! {
                _ = token.cancelled() => PrefetchState::Cancelled,
                outcome = prefetch_range(&loader, prefetch_end, &config) => outcome,
            };
            prefetch_tx.send_replace(outcome);
            if !background {
                return;
            }
            if outcome == PrefetchState::Cancelled {
                background_tx.send_replace(BackgroundState::Stopped);
                return;
            }
            background_tx.send_replace(BackgroundState::Running);
            let outcome = tokio::select! {
                _ = token.cancelled() => BackgroundState::Stopped,
                outcome = run_background(&loader, &config) => outcome,
            };
            background_tx.send_replace(outcome);
        });
        Prefetcher {
            cancel,
            prefetch,
            background: background_rx,
            background_enabled: background,
            task,
        }
    }

    /// Returns the prefetch state.
    pub fn state(&self) -> PrefetchState {
        *self.prefetch.borrow()
    }

    /// Returns the background fetch state.
    pub fn background_state(&self) -> BackgroundState {
        *self.background.borrow()
    }

    /// Waits up to `timeout` for prefetch to finish and returns its state
    /// ([`PrefetchState::Running`] if it did not finish in time).
    pub async fn wait(&self, timeout: Duration) -> PrefetchState {
        let mut rx = self.prefetch.clone();
        let finished =
            tokio::time::timeout(timeout, rx.wait_for(|s| *s != PrefetchState::Running)).await;
        match finished {
            Ok(Ok(state)) => *state,
            // The task ended without reporting: it was aborted.
            Ok(Err(_)) => PrefetchState::Cancelled,
            Err(_) => PrefetchState::Running,
        }
    }

    /// Waits up to `timeout` for background fetch to end and returns its state
    /// ([`BackgroundState::Idle`] at once when background fetch is off).
    pub async fn wait_background(&self, timeout: Duration) -> BackgroundState {
        if !self.background_enabled {
            return BackgroundState::Idle;
        }
        let mut rx = self.background.clone();
        let ended =
            |s: &BackgroundState| matches!(s, BackgroundState::Done | BackgroundState::Stopped);
        let _ = tokio::time::timeout(timeout, rx.wait_for(ended)).await;
        self.background_state()
    }

    /// Stops prefetch and background fetch; requests in flight are dropped.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

impl Drop for Prefetcher {
    fn drop(&mut self) {
        self.cancel.cancel();
        self.task.abort();
    }
}

/// Groups chunks into requests of at most `rule.max_request` bytes.
fn group(chunks: &[Chunk], rule: MergeRule) -> Vec<Vec<Chunk>> {
    let spans: Vec<_> = chunks.iter().map(Chunk::comp_range).collect();
    plan_requests(&spans, rule)
        .into_iter()
        .map(|r| r.members.into_iter().map(|m| chunks[m]).collect())
        .collect()
}

async fn prefetch_range(loader: &ChunkLoader, end: u64, config: &PrefetchConfig) -> PrefetchState {
    if end == 0 {
        return PrefetchState::Done { chunks: 0 };
    }
    let _priority = loader.cache.priority_gate().enter();
    let all = loader.index.all_chunks();
    let missing: Vec<Chunk> = loader
        .progress
        .starting_before(all, end)
        .map(|position| *loader.progress.chunk(all, position))
        .filter(|chunk| !loader.cached(chunk))
        .collect();
    let rule = MergeRule {
        max_gap: loader.config.merge_gap_bytes,
        max_request: config.request_bytes,
    };
    let options = LoadOptions {
        purpose: Purpose::Prefetch,
        wait_for_others: true,
        collect: false,
        rule,
        parallel: 1,
        required: usize::MAX,
    };
    let started = Instant::now();
    let failed_chunks: usize = futures_util::stream::iter(group(&missing, rule))
        .map(|chunks| async move {
            match loader.load(&chunks, options).await {
                Ok(_) => 0,
                Err(error) => {
                    tracing::warn!(layer = %loader.layer, chunks = chunks.len(), %error, "prefetch request failed");
                    chunks.len()
                }
            }
        })
        .buffer_unordered(config.concurrency)
        .fold(0, |sum, failed| async move { sum + failed })
        .await;
    tracing::info!(
        layer = %loader.layer,
        end,
        chunks = missing.len(),
        failed_chunks,
        ms = started.elapsed().as_millis() as u64,
        "prefetch finished"
    );
    if failed_chunks == 0 {
        PrefetchState::Done {
            chunks: missing.len(),
        }
    } else {
        PrefetchState::Failed { failed_chunks }
    }
}

/// Blob positions not handed out yet, and groups handed back after an interruption.
struct BackgroundQueue {
    next: usize,
    retry: VecDeque<Vec<Chunk>>,
    consecutive_failures: u32,
}

async fn run_background(loader: &ChunkLoader, config: &PrefetchConfig) -> BackgroundState {
    let queue = Mutex::new(BackgroundQueue {
        next: 0,
        retry: VecDeque::new(),
        consecutive_failures: 0,
    });
    let started = Instant::now();
    let workers =
        (0..config.background_concurrency).map(|_| background_worker(loader, &queue, config));
    futures_util::future::join_all(workers).await;
    let stopped = lock(&queue).consecutive_failures >= MAX_BACKGROUND_FAILURES;
    tracing::info!(
        layer = %loader.layer,
        fetched_fraction = loader.progress.fraction(),
        ms = started.elapsed().as_millis() as u64,
        stopped,
        "background fetch finished"
    );
    if stopped {
        BackgroundState::Stopped
    } else {
        BackgroundState::Done
    }
}

fn lock(queue: &Mutex<BackgroundQueue>) -> std::sync::MutexGuard<'_, BackgroundQueue> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

async fn background_worker(
    loader: &ChunkLoader,
    queue: &Mutex<BackgroundQueue>,
    config: &PrefetchConfig,
) {
    let gate = loader.cache.priority_gate();
    let rule = MergeRule {
        max_gap: loader.config.merge_gap_bytes,
        max_request: config.background_request_bytes,
    };
    let options = LoadOptions {
        purpose: Purpose::Background,
        wait_for_others: false,
        collect: false,
        rule,
        parallel: 1,
        required: usize::MAX,
    };
    loop {
        gate.wait_idle(config.background_quiet).await;
        let Some(chunks) = next_group(loader, queue, rule) else {
            return;
        };
        let entered = gate.entered();
        if gate.active() > 0 {
            lock(queue).retry.push_front(chunks);
            continue;
        }
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = loader.load(&chunks, options) => Some(outcome),
            _ = gate.wait_entered_after(entered) => None,
        };
        match outcome {
            None => {
                LayerStats::add(&loader.stats.background_interruptions, 1);
                lock(queue).retry.push_front(chunks);
                continue;
            }
            Some(Ok(_)) => lock(queue).consecutive_failures = 0,
            Some(Err(error)) => {
                let mut queue = lock(queue);
                queue.consecutive_failures += 1;
                tracing::warn!(
                    layer = %loader.layer,
                    first_offset = chunks[0].comp_offset(),
                    chunks = chunks.len(),
                    failures = queue.consecutive_failures,
                    %error,
                    "background fetch request failed"
                );
                if queue.consecutive_failures >= MAX_BACKGROUND_FAILURES {
                    return;
                }
            }
        }
        // Each worker gets an equal share of the layer's bandwidth limit.
        let share = config
            .background_bytes_per_sec
            .div_ceil(config.background_concurrency as u64);
        pace(&chunks, started, share).await;
    }
}

/// Takes the next run of chunks not obtained yet, in blob order, or a group handed back.
fn next_group(
    loader: &ChunkLoader,
    queue: &Mutex<BackgroundQueue>,
    rule: MergeRule,
) -> Option<Vec<Chunk>> {
    let all = loader.index.all_chunks();
    let mut queue = lock(queue);
    if queue.consecutive_failures >= MAX_BACKGROUND_FAILURES {
        return None;
    }
    while let Some(group) = queue.retry.pop_front() {
        let group: Vec<Chunk> = group
            .into_iter()
            .filter(|chunk| !loader.cached(chunk))
            .collect();
        if !group.is_empty() {
            return Some(group);
        }
    }
    let mut group: Vec<Chunk> = Vec::new();
    let (mut start, mut end) = (0u64, 0u64);
    while queue.next < loader.progress.len() {
        let position = queue.next;
        let chunk = loader.progress.chunk(all, position);
        if loader.progress.is_obtained(all, position) || loader.cached(chunk) {
            queue.next += 1;
            continue;
        }
        if !group.is_empty() {
            let too_far = chunk.comp_offset() > end.saturating_add(rule.max_gap);
            let too_big = chunk.comp_end().max(end) - start > rule.max_request;
            if too_far || too_big {
                break;
            }
        } else {
            start = chunk.comp_offset();
        }
        end = end.max(chunk.comp_end());
        group.push(*chunk);
        queue.next += 1;
    }
    (!group.is_empty()).then_some(group)
}

/// Sleeps so that background fetching stays below `bytes_per_sec` (0: no limit).
async fn pace(chunks: &[Chunk], started: Instant, bytes_per_sec: u64) {
    if bytes_per_sec == 0 {
        return;
    }
    let bytes: u64 = chunks.iter().map(|c| c.comp_end() - c.comp_offset()).sum();
    let budget = Duration::from_secs_f64(bytes as f64 / bytes_per_sec as f64);
    if let Some(rest) = budget.checked_sub(started.elapsed()) {
        tokio::time::sleep(rest).await;
    }
}
