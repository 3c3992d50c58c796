//! Prerequisite checks that skip a test locally and fail it in CI.
//!
//! A test that needs root, FUSE or an outside program calls [`require`] (or the
//! [`require_or_skip!`](crate::require_or_skip) macro) first. When the prerequisite is
//! missing, the outcome depends on the environment:
//!
//! - with `CI=true` (also `1` or `yes`), [`require`] panics, naming the missing thing and
//!   the setup command, because CI must never pass by skipping;
//! - otherwise it prints `SKIPPED: <reason>` to stderr and returns `false`.

use std::fmt;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// The command that installs every system package the tests need.
pub const SETUP_COMMAND: &str = "sudo scripts/setup.sh";

/// Something a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prereq {
    /// The effective user id is 0.
    Root,
    /// `/dev/fuse` exists and can be opened for reading and writing.
    Fuse,
    /// The kernel supports overlayfs (listed in `/proc/filesystems` or loadable).
    Overlayfs,
    /// An executable with this name is on `PATH`.
    Binary(&'static str),
}

impl fmt::Display for Prereq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prereq::Root => f.write_str("root privileges (effective uid 0)"),
            Prereq::Fuse => f.write_str("FUSE (/dev/fuse readable and writable)"),
            Prereq::Overlayfs => f.write_str("kernel overlayfs support"),
            Prereq::Binary(name) => write!(f, "the `{name}` program on PATH"),
        }
    }
}

impl Prereq {
    /// Checks whether the prerequisite is present, without printing or panicking.
    pub fn is_present(&self) -> bool {
        match self {
            Prereq::Root => is_root(),
            Prereq::Fuse => OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/fuse")
                .is_ok(),
            Prereq::Overlayfs => has_overlayfs(),
            Prereq::Binary(name) => find_binary(name).is_some(),
        }
    }
}

/// Returns true when `CI` is set to `true`, `1` or `yes` (any case).
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|value| matches!(value.to_ascii_lowercase().as_str(), "true" | "1" | "yes"))
        .unwrap_or(false)
}

/// Checks one prerequisite.
///
/// Returns true when it is present. When it is missing, panics under CI (see
/// [`in_ci`]) with a message naming it and [`SETUP_COMMAND`]; otherwise prints
/// `SKIPPED: <reason>` to stderr and returns false.
#[track_caller]
pub fn require(what: Prereq) -> bool {
    require_in(what, in_ci())
}

/// Implements [`require`] with the CI decision passed in, so both outcomes are testable.
#[track_caller]
fn require_in(what: Prereq, ci: bool) -> bool {
    if what.is_present() {
        return true;
    }
    let caller = std::panic::Location::caller();
    if ci {
        panic!(
            "missing prerequisite in CI: {what} (needed at {caller}); run `{SETUP_COMMAND}` \
             and run the tests as root"
        );
    }
    eprintln!("SKIPPED: missing {what} (needed at {caller}); run `{SETUP_COMMAND}` to install it");
    false
}

/// Checks every prerequisite in order and stops at the first missing one.
///
/// Same reporting as [`require`].
#[track_caller]
pub fn require_all(whats: &[Prereq]) -> bool {
    whats.iter().all(|what| require(*what))
}

/// Returns the full path of an executable found on `PATH`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    let path_var = std::env::var_os("PATH")?;
    std::env::split_paths(&path_var)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// Returns true when the effective user id is 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn has_overlayfs() -> bool {
    let listed = |text: &str| {
        text.lines()
            .any(|line| line.trim_end().ends_with("\toverlay"))
    };
    if std::fs::read_to_string("/proc/filesystems").is_ok_and(|text| listed(&text)) {
        return true;
    }
    // The module may simply not be loaded yet; loading it needs root.
    if is_root() {
        let _ = std::process::Command::new("modprobe")
            .arg("overlay")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|text| listed(&text))
}

/// The value a skipped test returns, so [`require_or_skip!`](crate::require_or_skip)
/// works in tests returning `()` and in tests returning `Result<(), E>`.
pub trait SkipReturn {
    /// Returns the value that marks the test as done without failure.
    fn skipped() -> Self;
}

impl SkipReturn for () {
    fn skipped() -> Self {}
}

impl<E> SkipReturn for Result<(), E> {
    fn skipped() -> Self {
        Ok(())
    }
}

/// Returns early from the current test when any listed prerequisite is missing.
///
/// Works in functions returning `()` or `Result<(), E>`. Under `CI=true` a missing
/// prerequisite panics instead (see [`require`]).
///
/// ```
/// use lazypull_testkit::{require_or_skip, Prereq};
///
/// fn needs_tar() {
///     require_or_skip!(Prereq::Binary("tar"));
///     // ... the test body runs only when GNU tar is on PATH ...
/// }
/// # needs_tar();
/// ```
#[macro_export]
macro_rules! require_or_skip {
    ($($what:expr),+ $(,)?) => {
        $(
            if !$crate::prereq::require($what) {
                return $crate::prereq::SkipReturn::skipped();
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn present_binary_is_found() {
        assert!(Prereq::Binary("sh").is_present());
        assert!(require(Prereq::Binary("sh")));
    }

    #[test]
    fn absent_binary_is_reported_missing() {
        assert!(!Prereq::Binary("lazypull-no-such-program").is_present());
    }

    #[test]
    #[should_panic(expected = "missing prerequisite in CI: the `lazypull-no-such-program` program")]
    fn missing_prerequisite_panics_in_ci() {
        require_in(Prereq::Binary("lazypull-no-such-program"), true);
    }

    #[test]
    fn missing_prerequisite_skips_outside_ci() {
        assert!(!require_in(
            Prereq::Binary("lazypull-no-such-program"),
            false
        ));
    }

    #[test]
    fn display_names_the_binary() {
        let text = Prereq::Binary("skopeo").to_string();
        assert!(text.contains("skopeo"), "{text}");
    }

    #[test]
    fn macro_accepts_unit_and_result_functions() {
        fn with_result() -> Result<(), String> {
            require_or_skip!(Prereq::Binary("sh"), Prereq::Binary("true"));
            Err("body ran".to_string())
        }
        fn with_unit(ran: &mut bool) {
            require_or_skip!(Prereq::Binary("sh"));
            *ran = true;
        }
        assert_eq!(with_result(), Err("body ran".to_string()));
        let mut ran = false;
        with_unit(&mut ran);
        assert!(ran);
    }
}
