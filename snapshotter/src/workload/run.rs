//! Starting the workload, waiting for its end (exit, readiness string, time limit or
//! interruption) and killing its process group.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use super::chroot::ChrootPlan;
use super::error::WorkloadError;
use super::output::{OutputEvent, ReadinessMatcher, spawn_echo};
use super::user::UserIds;

/// How often the waiting loop checks for exit, the time limit and interruption.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How long the output threads may take to reach end of file once the group is dead.
const OUTPUT_DRAIN: Duration = Duration::from_secs(2);

/// A workload: its command, environment and identity, the image root and the run's limits.
#[derive(Debug, Clone)]
pub struct WorkloadSpec {
    /// The mounted image root on the host.
    pub root: PathBuf,
    /// The command and its arguments. A command without `/` is searched in the `PATH` of `env`.
    pub command: Vec<OsString>,
    /// The complete environment.
    pub env: Vec<(String, String)>,
    /// Absolute working directory inside the image.
    pub workdir: String,
    /// The identity to switch to; `None` keeps root.
    pub user: Option<UserIds>,
    /// Time limit of the run.
    pub timeout: Duration,
    /// End the run successfully when this string appears on stdout or stderr.
    pub wait_for: Option<String>,
    /// Printed before every echoed output line.
    pub output_prefix: String,
}

/// End of a run. In every case the workload's process group has been killed and reaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadEnd {
    /// The readiness string appeared after `elapsed`.
    Ready {
        /// Time from start to the readiness string.
        elapsed: Duration,
    },
    /// The command exited (without the readiness string, when one was asked for).
    Exited {
        /// Its exit status.
        status: ExitStatus,
        /// Time from start to exit.
        elapsed: Duration,
    },
    /// The time limit passed first.
    TimedOut {
        /// The time limit.
        limit: Duration,
    },
}

/// Runs `spec` inside its image root and waits for its end. `interrupted` is polled; once it
/// returns true the workload is killed and [`WorkloadError::Interrupted`] returned.
///
/// Must run as root: it creates a mount namespace, mounts and chroots.
pub fn run_workload(
    spec: &WorkloadSpec,
    interrupted: &dyn Fn() -> bool,
) -> Result<WorkloadEnd, WorkloadError> {
    let program = spec.command.first().ok_or(WorkloadError::NoCommand)?;
    let command_text = program.to_string_lossy().into_owned();
    let path_var = spec
        .env
        .iter()
        .find(|(key, _)| key == "PATH")
        .map(|(_, value)| value.as_str())
        .unwrap_or(super::DEFAULT_PATH);
    let in_image = find_command(&spec.root, Path::new(program), path_var, &spec.workdir)
        .ok_or_else(|| WorkloadError::CommandNotFound {
            command: command_text.clone(),
            path: path_var.to_owned(),
        })?;
    let plan = ChrootPlan::new(&spec.root, &spec.workdir, spec.user.clone())?;

    let mut command = Command::new(&in_image);
    command
        .arg0(program)
        .args(&spec.command[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: `enter` makes only async-signal-safe system calls and allocates nothing, as the
    // child of a multi-threaded parent must; `plan` outlives the spawn.
    unsafe {
        command.pre_exec(move || plan.enter());
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            // The name exists but exec found no file: a dangling symlink, or a script whose
            // interpreter is missing from the image.
            WorkloadError::CommandNotFound {
                command: command_text.clone(),
                path: path_var.to_owned(),
            }
        } else {
            WorkloadError::Spawn {
                command: command_text.clone(),
                source,
            }
        }
    })?;
    tracing::info!(command = %command_text, pid = child.id(), "workload started");

    let (sender, events) = mpsc::channel();
    let matcher = || {
        spec.wait_for
            .as_deref()
            .map(|text| ReadinessMatcher::new(text.as_bytes()))
    };
    let mut echoes = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        echoes.push(spawn_echo(
            stdout,
            spec.output_prefix.clone(),
            matcher(),
            sender.clone(),
        ));
    }
    if let Some(stderr) = child.stderr.take() {
        echoes.push(spawn_echo(
            stderr,
            spec.output_prefix.clone(),
            matcher(),
            sender,
        ));
    }

    let result = wait(&mut child, spec, &events, started, interrupted);
    kill_group(&child);
    let reaped = child.wait();
    // The pipes close once every process holding them is gone, which ends the echo threads.
    // A process that left the group (a daemon that called setsid) may hold them for as long as
    // it runs, so the threads are left behind after OUTPUT_DRAIN.
    let drained_by = Instant::now() + OUTPUT_DRAIN;
    let mut held = 0;
    for echo in echoes.into_iter().flatten() {
        while !echo.is_finished() && Instant::now() < drained_by {
            std::thread::sleep(Duration::from_millis(10));
        }
        if echo.is_finished() {
            let _ = echo.join();
        } else {
            held += 1;
        }
    }
    if held > 0 {
        tracing::warn!(
            pipes = held,
            "a process outside the workload's process group still holds its output; not waiting for it"
        );
    }
    let end = result?;
    reaped.map_err(WorkloadError::Wait)?;
    match end {
        // Output read after the exit may still hold the readiness string.
        WorkloadEnd::Exited { elapsed, .. } if events.try_recv() == Ok(OutputEvent::Ready) => {
            Ok(WorkloadEnd::Ready { elapsed })
        }
        end => Ok(end),
    }
}

fn wait(
    child: &mut Child,
    spec: &WorkloadSpec,
    events: &mpsc::Receiver<OutputEvent>,
    started: Instant,
    interrupted: &dyn Fn() -> bool,
) -> Result<WorkloadEnd, WorkloadError> {
    loop {
        if interrupted() {
            return Err(WorkloadError::Interrupted);
        }
        match events.recv_timeout(POLL_INTERVAL) {
            Ok(OutputEvent::Ready) => {
                return Ok(WorkloadEnd::Ready {
                    elapsed: started.elapsed(),
                });
            }
            Err(RecvTimeoutError::Timeout) => {}
            // Both pipes are closed but the child may live on: poll without busy-waiting.
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL_INTERVAL),
        }
        if let Some(status) = child.try_wait().map_err(WorkloadError::Wait)? {
            return Ok(WorkloadEnd::Exited {
                status,
                elapsed: started.elapsed(),
            });
        }
        if started.elapsed() >= spec.timeout {
            return Ok(WorkloadEnd::TimedOut {
                limit: spec.timeout,
            });
        }
    }
}

/// Kills every process of the workload's group. The group may already be empty.
fn kill_group(child: &Child) {
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    match killpg(Pid::from_raw(pid), Signal::SIGKILL) {
        Ok(()) | Err(nix::Error::ESRCH) => {}
        Err(error) => tracing::warn!(pid, %error, "failed to kill the workload's process group"),
    }
}

/// Finds `program` in the image at `root` as `execvp` inside the image would, and returns its
/// path inside the image. A name with a `/` is taken relative to `workdir`; other names are
/// searched in the absolute directories of `path_var`.
///
/// Only checks that a directory entry exists (`lstat`); `exec` inside the chroot resolves
/// symlinks within the image.
fn find_command(root: &Path, program: &Path, path_var: &str, workdir: &str) -> Option<PathBuf> {
    let exists = |in_image: &Path| {
        let relative = in_image.strip_prefix("/").unwrap_or(in_image);
        std::fs::symlink_metadata(root.join(relative)).is_ok_and(|m| !m.is_dir())
    };
    if program.as_os_str().is_empty() {
        return None;
    }
    if program.to_string_lossy().contains('/') {
        let in_image = Path::new(workdir).join(program);
        return exists(&in_image).then_some(in_image);
    }
    path_var
        .split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| exists(candidate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_is_found_in_image_path() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        std::fs::write(root.path().join("usr/bin/tool"), b"").unwrap();
        assert_eq!(
            find_command(root.path(), Path::new("tool"), "/bin:/usr/bin", "/"),
            Some(PathBuf::from("/usr/bin/tool"))
        );
        assert_eq!(
            find_command(root.path(), Path::new("/usr/bin/tool"), "/bin", "/"),
            Some(PathBuf::from("/usr/bin/tool"))
        );
        assert_eq!(
            find_command(root.path(), Path::new("bin/tool"), "", "/usr"),
            Some(PathBuf::from("/usr/bin/tool"))
        );
    }

    #[test]
    fn missing_command_and_directories_are_not_found() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin/subdir")).unwrap();
        assert_eq!(
            find_command(root.path(), Path::new("tool"), "/usr/bin", "/"),
            None
        );
        assert_eq!(
            find_command(root.path(), Path::new("subdir"), "/usr/bin", "/"),
            None
        );
        assert_eq!(
            find_command(root.path(), Path::new(""), "/usr/bin", "/"),
            None
        );
    }
}
