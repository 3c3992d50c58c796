//! Per-layer progress: an indicatif bar on a terminal, `tracing` lines otherwise.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::options::ProgressMode;

/// Stage of a layer's processing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Downloading the source blob.
    Download,
    /// Decompressing it into a temporary tar file.
    Decompress,
    /// Writing the eStargz blob.
    Convert,
    /// Checking an eStargz input that passes through.
    Verify,
    /// Uploading or copying the result.
    Upload,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Download => "download",
            Phase::Decompress => "decompress",
            Phase::Convert => "convert",
            Phase::Verify => "verify",
            Phase::Upload => "upload",
        }
    }
}

/// The progress display of a whole conversion. Cheap to clone.
#[derive(Clone)]
pub struct Progress {
    mode: ProgressMode,
    multi: Option<MultiProgress>,
}

impl Progress {
    /// Creates the display. `Bars` draws on stderr.
    pub fn new(mode: ProgressMode) -> Self {
        let multi = (mode == ProgressMode::Bars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { mode, multi }
    }

    /// Starts the display of one layer.
    pub fn layer(&self, digest: &str, index: usize, count: usize) -> LayerProgress {
        let short = short_digest(digest);
        let bar = self.multi.as_ref().map(|multi| {
            let bar = multi.add(ProgressBar::new(0));
            let style = ProgressStyle::with_template(
                "{prefix} {msg:>10} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta:>4}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(format!("layer {}/{} {short}", index + 1, count));
            bar
        });
        LayerProgress {
            inner: Arc::new(LayerInner {
                mode: self.mode,
                bar,
                digest: digest.to_string(),
                state: Mutex::new((Phase::Download, 0)),
                last_decile: AtomicU64::new(0),
            }),
        }
    }
}

struct LayerInner {
    mode: ProgressMode,
    bar: Option<ProgressBar>,
    digest: String,
    /// Current phase and its total in bytes.
    state: Mutex<(Phase, u64)>,
    last_decile: AtomicU64,
}

/// Progress of one layer. Cheap to clone and usable from any thread.
#[derive(Clone)]
pub struct LayerProgress {
    inner: Arc<LayerInner>,
}

impl LayerProgress {
    /// Starts a phase of `total` bytes.
    pub fn phase(&self, phase: Phase, total: u64) {
        if let Ok(mut state) = self.inner.state.lock() {
            *state = (phase, total);
        }
        self.inner.last_decile.store(0, Ordering::Relaxed);
        if let Some(bar) = &self.inner.bar {
            // Length and position first: each setter may redraw the bar.
            bar.set_length(total);
            bar.set_position(0);
            bar.reset_eta();
            bar.set_message(phase.name());
        }
        if self.inner.mode == ProgressMode::Log {
            tracing::info!(layer = %self.inner.digest, phase = phase.name(), bytes = total, "layer phase started");
        }
    }

    /// Reports `done` bytes of the current phase.
    pub fn set(&self, done: u64) {
        if let Some(bar) = &self.inner.bar {
            bar.set_position(done);
        }
        if self.inner.mode != ProgressMode::Log {
            return;
        }
        let (phase, total) = self
            .inner
            .state
            .lock()
            .map(|s| *s)
            .unwrap_or((Phase::Convert, 0));
        if total == 0 {
            return;
        }
        let decile = (done.min(total) * 10 / total).min(10);
        let last = self.inner.last_decile.fetch_max(decile, Ordering::Relaxed);
        if decile > last && decile < 10 {
            tracing::info!(layer = %self.inner.digest, phase = phase.name(), percent = decile * 10, done, total, "layer progress");
        }
    }

    /// Ends the display of this layer with a one-line summary.
    pub fn finish(&self, summary: &str) {
        if let Some(bar) = &self.inner.bar {
            bar.finish_with_message(summary.to_string());
        }
    }

    /// Removes the bar after a failure.
    pub fn abandon(&self) {
        if let Some(bar) = &self.inner.bar {
            bar.abandon_with_message("failed");
        }
    }
}

/// Returns the first 12 hex digits of a digest, for display.
pub fn short_digest(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}
