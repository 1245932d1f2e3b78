//! A pseudo-terminal for tests: a command runs in a detached `tmux` session of a fixed size on
//! a private server socket, and the test reads the screen as a person would see it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::tools::require;

/// The marker the shell prints once the command has exited, with its exit code after it.
pub const EXITED: &str = "EXITED=";

/// Columns and rows of the terminal: wide enough that no line of the view wraps.
const SIZE: (u16, u16) = (300, 60);

/// A command running on a terminal; the session and its server stop when dropped.
pub struct Terminal {
    tmux: PathBuf,
    socket: String,
}

impl Terminal {
    /// Runs `program` with `args` on a fresh terminal, with `RUST_LOG` and `NO_COLOR` unset
    /// unless `env` sets them.
    pub fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        static SESSIONS: AtomicUsize = AtomicUsize::new(0);
        let tmux = require("tmux", "apt-get install -y tmux");
        let socket = format!("ocync-it-{}-{}", std::process::id(), SESSIONS.fetch_add(1, Ordering::Relaxed));
        let quote = |word: &str| format!("'{}'", word.replace('\'', r"'\''"));
        let assignments: Vec<String> = env.iter().map(|(key, value)| format!("{key}={}", quote(value))).collect();
        let words: Vec<String> = std::iter::once(program).chain(args.iter().copied()).map(quote).collect();
        // The pane outlives the command (the sleep), so the last screen can still be read.
        let script = format!(
            "env -u RUST_LOG -u NO_COLOR {} {}; echo {EXITED}$?; sleep 600",
            assignments.join(" "),
            words.join(" ")
        );
        let status = Command::new(&tmux)
            .args(["-L", &socket, "-f", "/dev/null", "new-session", "-d"])
            .args(["-x", &SIZE.0.to_string(), "-y", &SIZE.1.to_string(), "sh", "-c", &script])
            .status()
            .expect("start tmux");
        assert!(status.success(), "tmux new-session failed: {status}");
        Terminal { tmux, socket }
    }

    /// The screen as text, with the escape sequences of colours and attributes (`-e`).
    pub fn screen_with_escapes(&self) -> String {
        let output = Command::new(&self.tmux)
            .args(["-L", &self.socket, "capture-pane", "-p", "-e"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Screens read every `every` until the command has exited (the last one shows its exit
    /// code), or `limit` passes.
    pub fn frames_until_exit(&self, every: Duration, limit: Duration) -> Vec<String> {
        let started = Instant::now();
        let mut frames = Vec::new();
        loop {
            let frame = self.screen_with_escapes();
            let done = frame.contains(EXITED);
            frames.push(frame);
            if done {
                return frames;
            }
            assert!(
                started.elapsed() < limit,
                "the command did not exit within {limit:?}:\n{}",
                plain(&frames[frames.len() - 1])
            );
            std::thread::sleep(every);
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        // Only this test's private server (and the pane's shell and sleep with it).
        let _ = Command::new(&self.tmux).args(["-L", &self.socket, "kill-server"]).status();
    }
}

/// `screen` without escape sequences (CSI sequences such as colours).
pub fn plain(screen: &str) -> String {
    let mut out = String::with_capacity(screen.len());
    let mut chars = screen.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameters and intermediates, up to the final byte (@ to ~).
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The non-blank lines of a screen, escape sequences removed.
pub fn lines(screen: &str) -> Vec<String> {
    plain(screen).lines().map(|line| line.trim_end().to_string()).filter(|line| !line.is_empty()).collect()
}
