//! Detaching the serving process: fork before any thread exists, start a new session, and
//! report readiness or the startup error to the waiting parent through a pipe.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Errors of [`detach`].
#[derive(Debug, thiserror::Error)]
pub enum DetachError {
    /// The log file of the serving process, or its directory, could not be created.
    #[error("failed to create the log file {path}; choose a writable state directory")]
    Log {
        /// The log file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The pipe, the fork or the child's session and standard streams could not be set up.
    #[error("failed to fork the serving process")]
    Fork(#[source] std::io::Error),
}

/// The side of the fork the caller is on.
#[derive(Debug)]
pub enum Detached {
    /// The original process: the child's report, `Ok(())` when it is serving.
    Parent(Result<(), String>),
    /// The detached child, which must report through [`Readiness`].
    Child(Readiness),
}

/// The child's end of the readiness pipe. Dropping it without a report closes the pipe, and the
/// parent then reports that the child ended before it was ready.
#[derive(Debug)]
pub struct Readiness {
    pipe: Option<File>,
}

impl Readiness {
    /// Creates a readiness that reports nowhere (for `--foreground`).
    pub fn none() -> Readiness {
        Readiness { pipe: None }
    }

    /// Tells the parent that everything is mounted.
    pub fn ready(&mut self) {
        self.send("ok\n");
    }

    /// Tells the parent why startup failed.
    pub fn failed(&mut self, message: &str) {
        self.send(&format!("error: {}\n", message.replace('\n', " ")));
    }

    fn send(&mut self, line: &str) {
        if let Some(mut pipe) = self.pipe.take() {
            // The parent may have been killed meanwhile; nothing is left to tell then.
            let _ = pipe.write_all(line.as_bytes());
        }
    }
}

/// Forks. The child starts a new session, reads stdin from `/dev/null` and appends stdout and
/// stderr to `log`; the parent waits for the child's report.
///
/// Must be called while the process has a single thread (before any tokio runtime exists):
/// only the calling thread survives `fork`.
pub fn detach(log: &Path) -> Result<Detached, DetachError> {
    let log_error = |source| DetachError::Log {
        path: log.to_path_buf(),
        source,
    };
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).map_err(log_error)?;
    }
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(log_error)?;
    fork_with_pipe(log, &log_file).map_err(DetachError::Fork)
}

fn fork_with_pipe(log: &Path, log_file: &File) -> std::io::Result<Detached> {
    let (read_end, write_end): (OwnedFd, OwnedFd) = nix::unistd::pipe()?;
    // SAFETY: the caller guarantees the process is single-threaded, so the child inherits no
    // locks held by other threads. The child then only runs ordinary Rust code.
    match unsafe { nix::unistd::fork() }? {
        nix::unistd::ForkResult::Parent { .. } => {
            drop(write_end);
            let mut report = String::new();
            File::from(read_end).read_to_string(&mut report)?;
            let report = report.trim();
            Ok(Detached::Parent(match report.strip_prefix("error: ") {
                None if report == "ok" => Ok(()),
                None if report.is_empty() => Err(format!(
                    "the serving process exited before it was ready; see {}",
                    log.display()
                )),
                None => Err(report.to_owned()),
                Some(message) => Err(message.to_owned()),
            }))
        }
        nix::unistd::ForkResult::Child => {
            drop(read_end);
            nix::unistd::setsid()?;
            let null = File::open("/dev/null")?;
            redirect(&null, libc::STDIN_FILENO)?;
            redirect(log_file, libc::STDOUT_FILENO)?;
            redirect(log_file, libc::STDERR_FILENO)?;
            Ok(Detached::Child(Readiness {
                pipe: Some(File::from(write_end)),
            }))
        }
    }
}

fn redirect(file: &File, target: i32) -> std::io::Result<()> {
    // SAFETY: both descriptors are valid for the duration of the call. dup2 replaces `target`
    // atomically, and no Rust object owns the standard descriptors.
    if unsafe { libc::dup2(file.as_raw_fd(), target) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
