//! The disk writer: one thread per cache that performs disk-tier writes in arrival order, in
//! the gaps between prioritized work.
//!
//! Chunk writes leave the read path at once and wait here. Creating a chunk file costs tens to
//! hundreds of microseconds of system time. A layer of many small files (a `node_modules` tree)
//! yields thousands of chunk files within a second of a cold start. On the node bench image,
//! writing them at once added 1.5 to 3.9 s of system time to a cold start, on the cores the
//! workload needs. So the thread waits until the [`PriorityGate`] has been idle for [`QUIET`]
//! (no demand read or prefetch is fetching) or the write has waited [`MAX_DEFER`]. It does not
//! wait while the queued bytes exceed a quarter of the queue's bound
//! (`disk_write_queue_bytes`). The last rule keeps a long sequential read, during which the
//! gate is never idle, from filling the queue: writes beyond the bound are skipped and counted,
//! and the next mount fetches those chunks again. The chunk stays in the memory tier meanwhile.
//! One thread, not a task per chunk, also keeps creates in one directory from contending for
//! its lock. A process killed with SIGKILL loses the writes still queued: those chunks are
//! fetched again by the next mount, never served damaged.
//!
//! [`PriorityGate`]: super::PriorityGate

use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::priority::GateProbe;

/// Idle time of the priority gate after which queued writes run.
const QUIET: Duration = Duration::from_millis(50);
/// Maximum time a write waits for the gate to become idle.
const MAX_DEFER: Duration = Duration::from_secs(5);
/// How often a waiting write looks at the gate while prioritized work runs.
const POLL: Duration = Duration::from_millis(10);

/// One queued write.
pub(crate) type WriteJob = Box<dyn FnOnce() + Send + 'static>;

/// Handle to the writer thread; the thread ends once the handle is dropped and the queue is
/// drained.
pub(crate) struct DiskWriter {
    jobs: mpsc::Sender<(Instant, WriteJob)>,
}

impl DiskWriter {
    /// Starts the thread. It defers writes while `gate` reports prioritized work, unless
    /// `backlog` (the bytes queued) exceeds `backlog_limit`.
    pub(crate) fn start(
        gate: GateProbe,
        backlog: impl Fn() -> u64 + Send + 'static,
        backlog_limit: u64,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<(Instant, WriteJob)>();
        std::thread::Builder::new()
            .name("lazypull-disk-writer".into())
            .spawn(move || {
                for (queued, job) in queue {
                    while backlog() <= backlog_limit
                        && let Some(pause) = deferral(&gate, queued.elapsed())
                    {
                        std::thread::sleep(pause);
                    }
                    job();
                }
                tracing::debug!("disk writer stopped");
            })?;
        Ok(DiskWriter { jobs })
    }

    /// Queues `job`. Gives it back when the thread is gone (it panicked), so the caller can
    /// run it itself.
    pub(crate) fn submit(&self, job: WriteJob) -> Result<(), WriteJob> {
        self.jobs
            .send((Instant::now(), job))
            .map_err(|rejected| rejected.0.1)
    }
}

/// How long a write queued `waited` ago should still sleep, or `None` to run it now.
fn deferral(gate: &GateProbe, waited: Duration) -> Option<Duration> {
    if waited >= MAX_DEFER {
        return None;
    }
    match gate.idle_for() {
        Some(idle) if idle >= QUIET => None,
        Some(idle) => Some(QUIET - idle),
        None => Some(POLL),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::PriorityGate;
    use std::sync::{Arc, Mutex};

    #[test]
    fn writer_keeps_queue_order() {
        let gate = PriorityGate::new();
        let writer = DiskWriter::start(gate.probe(), || 0, u64::MAX).unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let (done, finished) = mpsc::channel();
        for i in 0..100 {
            let order = order.clone();
            let done = done.clone();
            writer
                .submit(Box::new(move || {
                    order.lock().unwrap().push(i);
                    done.send(()).unwrap();
                }))
                .unwrap_or_else(|_| panic!("writer thread is gone"));
        }
        for _ in 0..100 {
            finished.recv().unwrap();
        }
        assert_eq!(*order.lock().unwrap(), (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn writer_waits_for_idle_gate() {
        let gate = PriorityGate::new();
        let writer = DiskWriter::start(gate.probe(), || 0, u64::MAX).unwrap();
        let (done, finished) = mpsc::channel();
        let guard = gate.enter();
        writer
            .submit(Box::new(move || done.send(()).unwrap()))
            .unwrap_or_else(|_| panic!("writer thread is gone"));
        assert!(
            finished.recv_timeout(Duration::from_millis(300)).is_err(),
            "the write ran while a priority guard was held"
        );
        drop(guard);
        finished
            .recv_timeout(Duration::from_secs(2))
            .expect("the write did not run once the gate was idle");
    }

    #[test]
    fn writer_skips_the_wait_for_a_large_backlog() {
        let gate = PriorityGate::new();
        let _guard = gate.enter();
        let writer = DiskWriter::start(gate.probe(), || 100, 10).unwrap();
        let (done, finished) = mpsc::channel();
        writer
            .submit(Box::new(move || done.send(()).unwrap()))
            .unwrap_or_else(|_| panic!("writer thread is gone"));
        finished
            .recv_timeout(Duration::from_secs(1))
            .expect("a write over the backlog limit waited for the gate");
    }

    #[test]
    fn writer_runs_after_max_deferral() {
        let gate = PriorityGate::new();
        let _guard = gate.enter();
        assert_eq!(deferral(&gate.probe(), MAX_DEFER), None);
        assert_eq!(deferral(&gate.probe(), Duration::ZERO), Some(POLL));
    }
}
