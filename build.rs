//! Build script: records what `ocync version` reports about the build itself, the git commit
//! and the target triple, as compile-time environment variables.
//!
//! The commit comes from `OCYNC_GIT_COMMIT` when set (builds from a source tarball or inside a
//! container without `.git` can pass it in), else from `git rev-parse`, else "unknown".

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=OCYNC_GIT_COMMIT");
    let commit = std::env::var("OCYNC_GIT_COMMIT")
        .ok()
        .filter(|commit| !commit.trim().is_empty())
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=OCYNC_GIT_COMMIT={commit}");
    // Cargo always sets TARGET for build scripts.
    let target = std::env::var("TARGET").unwrap_or_else(|_| "unknown".to_string());
    println!("cargo:rustc-env=OCYNC_TARGET={target}");

    // A new commit or checkout changes HEAD or the ref it names; rebuilding then keeps the
    // reported commit true. `--git-path` resolves both inside worktrees, whose `.git` is a file.
    for path in ["HEAD", "packed-refs"] {
        rerun_if_git_path_changed(path);
    }
    if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
        rerun_if_git_path_changed(&reference);
    }
}

fn rerun_if_git_path_changed(path: &str) {
    if let Some(resolved) = git(&["rev-parse", "--path-format=absolute", "--git-path", path])
        && std::path::Path::new(&resolved).exists()
    {
        println!("cargo:rerun-if-changed={resolved}");
    }
}

/// `git ARGS` in the package directory, trimmed; `None` without git or outside a repository.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_string();
    (output.status.success() && !text.is_empty()).then_some(text)
}
