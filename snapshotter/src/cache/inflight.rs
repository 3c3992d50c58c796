//! Single-flight: at most one fetch per chunk at a time, with every waiter getting its result.
//!
//! The first caller that misses a chunk gets a [`FillGuard`] and must fetch it; later callers get
//! a [`Waiter`]. The guard publishes verified bytes with [`FillGuard::complete`] or an error
//! with [`FillGuard::fail`]. A guard dropped without either (its task was cancelled) wakes the
//! waiters with [`WaitOutcome::Abandoned`] so one of them can take over. Nothing about a failure
//! is remembered once the guard is gone: the next lookup fetches again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::watch;

use super::key::ChunkKey;

/// Why a chunk could not be obtained, shared by the fetching caller and every waiter.
pub type FillError = Arc<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Clone)]
pub(crate) enum SlotState {
    Pending,
    Ready(Bytes),
    Failed(FillError),
}

/// The chunks being fetched right now, with a receiver of each one's outcome.
#[derive(Default)]
pub(crate) struct InflightMap {
    slots: Mutex<HashMap<ChunkKey, watch::Receiver<SlotState>>>,
}

impl InflightMap {
    pub(crate) fn lock(&self) -> MutexGuard<'_, HashMap<ChunkKey, watch::Receiver<SlotState>>> {
        // Every critical section is a single map operation, so a poisoned map is consistent.
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Removes the slot of `key` if it is still the one fed by `sender`.
    pub(crate) fn remove(&self, key: &ChunkKey, sender: &watch::Sender<SlotState>) {
        let ours = sender.subscribe();
        let mut slots = self.lock();
        if slots.get(key).is_some_and(|rx| rx.same_channel(&ours)) {
            slots.remove(key);
        }
    }
}

/// Waits for another caller's fetch of a chunk.
#[derive(Debug)]
pub struct Waiter {
    pub(crate) rx: watch::Receiver<SlotState>,
}

impl std::fmt::Debug for SlotState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SlotState::Pending => f.write_str("Pending"),
            SlotState::Ready(bytes) => write!(f, "Ready({} bytes)", bytes.len()),
            SlotState::Failed(error) => write!(f, "Failed({error})"),
        }
    }
}

/// What a [`Waiter`] learned.
#[derive(Debug)]
pub enum WaitOutcome {
    /// The fetch succeeded; the bytes are verified.
    Ready(Bytes),
    /// The fetch failed after its retries.
    Failed(FillError),
    /// The fetching caller went away without a result; look the chunk up again.
    Abandoned,
}

impl Waiter {
    /// Waits for the outcome of the fetch.
    pub async fn wait(mut self) -> WaitOutcome {
        match self.rx.wait_for(|s| !matches!(s, SlotState::Pending)).await {
            Ok(state) => match &*state {
                SlotState::Ready(bytes) => WaitOutcome::Ready(bytes.clone()),
                SlotState::Failed(error) => WaitOutcome::Failed(error.clone()),
                SlotState::Pending => WaitOutcome::Abandoned,
            },
            Err(_) => WaitOutcome::Abandoned,
        }
    }
}

/// The obligation to fetch one chunk; see the module documentation.
///
/// Dropping it without [`complete`](FillGuard::complete) or [`fail`](FillGuard::fail) releases
/// the chunk to the next caller.
#[must_use = "a fill guard must be completed or failed, or waiters fetch again"]
pub struct FillGuard<'a> {
    pub(crate) cache: &'a super::ChunkCache,
    pub(crate) key: ChunkKey,
    pub(crate) sender: Option<watch::Sender<SlotState>>,
}

impl std::fmt::Debug for FillGuard<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FillGuard").field("key", &self.key).finish()
    }
}

/// Where the bytes given to [`FillGuard::complete`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Fetched and verified now: also written to the disk tier.
    Network,
    /// Read from the disk tier: kept in memory only.
    Disk,
}

impl FillGuard<'_> {
    /// The chunk this guard fetches.
    pub fn key(&self) -> &ChunkKey {
        &self.key
    }

    /// Publishes verified bytes: into the memory tier, to the disk tier when they came from the
    /// network, and to every waiter.
    pub fn complete(mut self, bytes: Bytes, origin: Origin) {
        // Memory first, slot removal second: a caller that finds no slot then finds the bytes.
        self.cache.store(self.key, bytes.clone(), origin);
        if let Some(sender) = self.sender.take() {
            self.cache.inflight.remove(&self.key, &sender);
            sender.send_replace(SlotState::Ready(bytes));
        }
    }

    /// Reports a failure to every waiter. Nothing is cached.
    pub fn fail(mut self, error: FillError) {
        if let Some(sender) = self.sender.take() {
            self.cache.inflight.remove(&self.key, &sender);
            sender.send_replace(SlotState::Failed(error));
        }
    }
}

impl Drop for FillGuard<'_> {
    fn drop(&mut self) {
        if let Some(sender) = self.sender.take() {
            self.cache.inflight.remove(&self.key, &sender);
        }
    }
}
