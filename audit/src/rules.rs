//! Path rules behind the findings: which files are package-manager caches, version-control
//! data, test and documentation trees, or build-only toolchains. Each rule returns the
//! directory it blames, so a report can name `var/lib/apt/lists` once instead of every file.

use serde::Serialize;

/// A kind of finding that follows from a file's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PathRule {
    /// apt package lists and downloaded `.deb` archives.
    AptCache,
    /// apk's download cache.
    ApkCache,
    /// npm's and yarn's download caches.
    NpmCache,
    /// pip's download and wheel cache.
    PipCache,
    /// cargo's registry and git caches.
    CargoCache,
    /// A `.git` directory.
    GitDirectory,
    /// Directories named `test`, `tests` or `__tests__`.
    TestTree,
    /// Manual pages, info pages, `/usr/share/doc`, and `doc`/`docs` inside installed packages.
    DocTree,
    /// Compilers and headers needed only to build: `usr/include`, `usr/lib/gcc`, `usr/libexec/gcc`.
    BuildToolchain,
}

impl PathRule {
    /// Lower-case name for text output.
    pub fn name(self) -> &'static str {
        match self {
            PathRule::AptCache => "apt-cache",
            PathRule::ApkCache => "apk-cache",
            PathRule::NpmCache => "npm-cache",
            PathRule::PipCache => "pip-cache",
            PathRule::CargoCache => "cargo-cache",
            PathRule::GitDirectory => "git-directory",
            PathRule::TestTree => "test-tree",
            PathRule::DocTree => "doc-tree",
            PathRule::BuildToolchain => "build-toolchain",
        }
    }
}

const PREFIXES: [(&str, PathRule); 13] = [
    ("var/lib/apt/lists", PathRule::AptCache),
    ("var/cache/apt", PathRule::AptCache),
    ("var/cache/apk", PathRule::ApkCache),
    ("usr/local/share/.cache/yarn", PathRule::NpmCache),
    ("usr/share/doc", PathRule::DocTree),
    ("usr/share/man", PathRule::DocTree),
    ("usr/share/info", PathRule::DocTree),
    ("usr/local/share/doc", PathRule::DocTree),
    ("usr/local/share/man", PathRule::DocTree),
    ("usr/include", PathRule::BuildToolchain),
    ("usr/local/include", PathRule::BuildToolchain),
    ("usr/lib/gcc", PathRule::BuildToolchain),
    ("usr/libexec/gcc", PathRule::BuildToolchain),
];

/// Directories that hold installed third-party packages.
const PACKAGE_DIRS: [&[u8]; 3] = [b"node_modules", b"site-packages", b"dist-packages"];

/// Classifies a cleaned path. Returns the rule and the blamed directory (a prefix of `path`).
pub fn classify(path: &[u8]) -> Option<(PathRule, &[u8])> {
    for (prefix, rule) in PREFIXES {
        let prefix = prefix.as_bytes();
        if path.starts_with(prefix) && path.get(prefix.len()) == Some(&b'/') {
            return Some((rule, &path[..prefix.len()]));
        }
    }
    let components: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    let mut end = 0usize;
    let mut inside_packages = false;
    // The last component is the file itself: only directories are matched.
    for (i, part) in components.iter().enumerate().take(components.len() - 1) {
        end += part.len() + usize::from(i > 0);
        let next = components.get(i + 1).copied().unwrap_or_default();
        let rule = match *part {
            b".git" => Some(PathRule::GitDirectory),
            b".npm" | b".yarn" => Some(PathRule::NpmCache),
            b".cache" if next == b"pip" => Some(PathRule::PipCache),
            b".cache" if next == b"yarn" => Some(PathRule::NpmCache),
            b".cargo" if next == b"registry" || next == b"git" => Some(PathRule::CargoCache),
            b"test" | b"tests" | b"__tests__" => Some(PathRule::TestTree),
            b"doc" | b"docs" if inside_packages => Some(PathRule::DocTree),
            _ => None,
        };
        if let Some(rule) = rule {
            let end = match rule {
                // Blame `.cache/pip`, `.cargo/registry`, not the whole `.cache`.
                PathRule::PipCache | PathRule::CargoCache => end + 1 + next.len(),
                _ => end,
            };
            return Some((rule, &path[..end]));
        }
        if PACKAGE_DIRS.contains(part) {
            inside_packages = true;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str) -> Option<(PathRule, String)> {
        classify(path.as_bytes()).map(|(r, d)| (r, String::from_utf8_lossy(d).into_owned()))
    }

    #[test]
    fn caches_are_blamed_on_their_directory() {
        assert_eq!(
            rule("var/lib/apt/lists/deb.debian.org_dists_bookworm_InRelease"),
            Some((PathRule::AptCache, "var/lib/apt/lists".into()))
        );
        assert_eq!(
            rule("root/.cache/pip/http/a/b"),
            Some((PathRule::PipCache, "root/.cache/pip".into()))
        );
        assert_eq!(
            rule("root/.npm/_cacache/index-v5/x"),
            Some((PathRule::NpmCache, "root/.npm".into()))
        );
        assert_eq!(
            rule("usr/local/cargo/.cargo/registry/cache/x.crate"),
            Some((
                PathRule::CargoCache,
                "usr/local/cargo/.cargo/registry".into()
            ))
        );
    }

    #[test]
    fn git_tests_and_docs_are_found() {
        assert_eq!(
            rule("app/.git/objects/pack/p.pack"),
            Some((PathRule::GitDirectory, "app/.git".into()))
        );
        assert_eq!(
            rule("usr/lib/python3.11/test/test_os.py"),
            Some((PathRule::TestTree, "usr/lib/python3.11/test".into()))
        );
        assert_eq!(
            rule("app/node_modules/lodash/docs/a.md"),
            Some((PathRule::DocTree, "app/node_modules/lodash/docs".into()))
        );
        assert_eq!(rule("app/docs/index.html"), None);
        assert_eq!(rule("usr/bin/test"), None);
        assert_eq!(rule("usr/share/doc"), None);
    }
}
