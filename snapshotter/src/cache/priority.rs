//! The priority gate: demand reads and prefetch go first, background fetches wait.
//!
//! Every demand read and every prefetch keeps a [`PriorityGuard`] while it looks up and fetches
//! chunks. Background fetch tasks wait until no guard is held and a quiet period has passed,
//! and abandon a request in flight as soon as a new guard is taken (see
//! [`PriorityGate::wait_entered_after`]), so a demand read never queues behind background work.
//! One gate serves all layers that share a [`ChunkCache`](super::ChunkCache), because they
//! share one network link.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
struct GateState {
    /// Guards currently held.
    active: usize,
    /// Guards taken since the gate was created.
    entered: u64,
    /// When `active` last dropped to zero.
    idle_since: Instant,
}

/// Tracks prioritized work in progress; see the module documentation.
#[derive(Debug)]
pub struct PriorityGate {
    state: watch::Sender<GateState>,
}

/// Marks prioritized work in progress until dropped.
#[derive(Debug)]
#[must_use = "the priority ends when the guard is dropped"]
pub struct PriorityGuard<'a> {
    gate: &'a PriorityGate,
}

impl Default for PriorityGate {
    fn default() -> Self {
        Self::new()
    }
}

impl PriorityGate {
    /// Creates a gate with no prioritized work in progress.
    pub fn new() -> Self {
        let (state, _) = watch::channel(GateState {
            active: 0,
            entered: 0,
            idle_since: Instant::now(),
        });
        PriorityGate { state }
    }

    /// Starts prioritized work; background fetches pause until the guard is dropped.
    pub fn enter(&self) -> PriorityGuard<'_> {
        self.state.send_modify(|s| {
            s.active += 1;
            s.entered += 1;
        });
        PriorityGuard { gate: self }
    }

    /// Guards currently held.
    pub fn active(&self) -> usize {
        self.state.borrow().active
    }

    /// Guards taken so far; pass it to [`PriorityGate::wait_entered_after`].
    pub fn entered(&self) -> u64 {
        self.state.borrow().entered
    }

    /// Returns a view of the gate for a thread outside the runtime (the disk writer).
    pub(crate) fn probe(&self) -> GateProbe {
        GateProbe {
            state: self.state.subscribe(),
        }
    }

    /// Waits until no guard is held and none has been for `quiet`.
    pub async fn wait_idle(&self, quiet: Duration) {
        let mut rx = self.state.subscribe();
        loop {
            let idle_since = match rx.wait_for(|s| s.active == 0).await {
                Ok(state) => state.idle_since,
                Err(_) => return,
            };
            let elapsed = idle_since.elapsed();
            if elapsed >= quiet {
                return;
            }
            tokio::time::sleep(quiet - elapsed).await;
        }
    }

    /// Resolves once more than `entered` guards have been taken, that is, when prioritized work
    /// started after [`PriorityGate::entered`] returned `entered`.
    pub async fn wait_entered_after(&self, entered: u64) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| s.entered > entered).await;
    }
}

/// Read-only view of a [`PriorityGate`], usable from any thread.
pub(crate) struct GateProbe {
    state: watch::Receiver<GateState>,
}

impl GateProbe {
    /// Returns how long no guard has been held, or `None` while one is.
    pub(crate) fn idle_for(&self) -> Option<Duration> {
        let state = *self.state.borrow();
        (state.active == 0).then(|| state.idle_since.elapsed())
    }
}

impl Drop for PriorityGuard<'_> {
    fn drop(&mut self) {
        self.gate.state.send_modify(|s| {
            s.active -= 1;
            if s.active == 0 {
                s.idle_since = Instant::now();
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn wait_idle_waits_for_guards_and_quiet_period() {
        let gate = std::sync::Arc::new(PriorityGate::new());
        tokio::time::sleep(Duration::from_secs(1)).await;
        let started = Instant::now();
        let g2 = gate.clone();
        let holder = tokio::spawn(async move {
            let _guard = g2.enter();
            tokio::time::sleep(Duration::from_millis(300)).await;
        });
        tokio::task::yield_now().await;
        assert_eq!(gate.active(), 1);
        gate.wait_idle(Duration::from_millis(200)).await;
        assert!(
            started.elapsed() >= Duration::from_millis(500),
            "{:?}",
            started.elapsed()
        );
        holder.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn entering_wakes_interrupt_waiters() {
        let gate = std::sync::Arc::new(PriorityGate::new());
        let before = gate.entered();
        let g2 = gate.clone();
        let waiter = tokio::spawn(async move { g2.wait_entered_after(before).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(gate.enter());
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
