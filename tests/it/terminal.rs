//! The live view on a terminal (issue 21): the `ocync` binary runs under a pseudo-terminal
//! (`tmux`) against a source slowed by the fault proxy, and the tests read the screen.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::copy::seed;
use crate::support::TestRegistry;
use crate::support::proxy::{Action, FaultProxy};
use crate::support::tmux::{EXITED, Terminal, lines, plain};
use crate::support::tools::TempConfig;
use ocync::testing::testdata;

/// Every blob read from the source waits this long, so the run lasts a few seconds.
const SLOW_BLOB: Duration = Duration::from_millis(500);
/// Good images; one more (`team/broken`) fails.
const GOOD: usize = 5;

struct Slowed {
    _source: TestRegistry,
    target: TestRegistry,
    proxy: FaultProxy,
    config: TempConfig,
}

/// Five images of a 1 MB base each and one whose base the source refuses (404), behind a
/// proxy that slows every blob read; one target; two transfers at a time.
async fn slowed_corpus() -> Slowed {
    let source = TestRegistry::plain();
    let target = TestRegistry::plain();
    let mut mappings = String::from("  - from: team/broken\n");
    let broken = testdata::index(99, &[(990, 1_000_000)], &[("linux", "amd64")], false);
    seed(&source, "team/broken", "1.0", &broken).await;
    for n in 0..GOOD {
        let built = testdata::index(n as u64 + 1, &[(100 + n as u64, 1_000_000)], &[("linux", "amd64")], false);
        seed(&source, &format!("team/app{n}"), "1.0", &built).await;
        mappings.push_str(&format!("  - from: team/app{n}\n"));
    }
    let refused = broken.blobs().iter().find(|b| b.descriptor.size == 1_000_000).unwrap().descriptor.digest.to_string();
    let proxy = FaultProxy::start(&source.host, move |request| {
        if request.method == "GET" && request.target.contains(&refused) {
            Action::Respond { status: 404, headers: vec![], body: r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#.into() }
        } else if request.method == "GET" && request.target.contains("/blobs/") {
            Action::Delay(SLOW_BLOB)
        } else {
            Action::Forward
        }
    });
    let config = TempConfig::new(&format!(
        "global: {{ max_concurrent_transfers: 2 }}\n\
         registries:\n  upstream: {{ url: \"http://{}\" }}\n  mirror: {{ url: \"http://{}\" }}\n\
         defaults:\n  source: upstream\n  targets: mirror\nmappings:\n{mappings}",
        proxy.host, target.host
    ));
    Slowed { _source: source, target, proxy, config }
}

fn ocync_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ocync")
}

/// Frames of a run: a screen every 150 ms until it exits (a minute at most).
fn frames(terminal: &Terminal) -> Vec<String> {
    terminal.frames_until_exit(Duration::from_millis(150), Duration::from_secs(60))
}

/// `(done, planned)` of the overall line of a screen, if the view is on it, with its line index.
fn overall(screen: &str) -> Option<(usize, u64, u64)> {
    lines(screen).iter().enumerate().find_map(|(n, line)| {
        let counts = line.strip_prefix("images ")?.split(':').next()?;
        let (done, planned) = counts.split_once('/')?;
        Some((n, done.parse().ok()?, planned.parse().ok()?))
    })
}

/// The lines after the last frame's view, up to the exit marker, and the exit code.
fn last_screen(frames: &[String]) -> (Vec<String>, i32) {
    let screen = lines(frames.last().expect("at least one frame"));
    let exit = screen.iter().position(|line| line.starts_with(EXITED)).expect("the exit marker");
    let code = screen[exit][EXITED.len()..].parse().expect("an exit code");
    (screen[..exit].to_vec(), code)
}

#[tokio::test]
async fn sync_on_a_terminal_draws_an_advancing_view_with_errors_above_and_the_summary_last() {
    let corpus = slowed_corpus().await;
    let terminal = Terminal::run(ocync_bin(), &["sync", "--config", &corpus.config.path], &[]);
    let frames = frames(&terminal);

    // The overall line carries the plan's total (six image targets) and advances.
    let views: Vec<(usize, u64, u64)> = frames.iter().filter_map(|f| overall(f)).collect();
    assert!(views.len() >= 3, "the view was on screen for {} frames:\n{}", views.len(), plain(&frames[0]));
    assert!(views.iter().all(|&(_, _, planned)| planned == GOOD as u64 + 1), "{views:?}");
    let done: Vec<u64> = views.iter().map(|&(_, done, _)| done).collect();
    assert!(done.windows(2).all(|w| w[0] <= w[1]), "the done count never goes back: {done:?}");
    assert!(done.first() < done.last() && *done.last().unwrap() > 0, "the done count advances: {done:?}");
    let in_flight = frames.iter().flat_map(|f| lines(f)).find(|l| l.contains("  sha256:") && l.contains(" of "));
    let in_flight = in_flight.expect("a line for a transfer in flight");
    assert!(in_flight.trim_start().starts_with("team/"), "image, blob, bytes of size: {in_flight}");
    let overall_lines: Vec<String> =
        frames.iter().flat_map(|f| lines(f)).filter(|l| l.starts_with("images ")).collect();
    assert!(overall_lines.iter().any(|l| l.contains("MiB of ") && l.contains("/s |") && l.contains("elapsed")));
    assert!(overall_lines.iter().any(|l| l.contains(" left")), "an estimate of what is left appears");

    // The failure is logged above the view while the view is still drawn.
    let error_above = frames.iter().any(|frame| {
        let screen = lines(frame);
        let failed = screen.iter().position(|l| l.contains("ERROR") && l.contains("image failed"));
        matches!((failed, overall(frame)), (Some(failed), Some((view, _, _))) if failed < view)
    });
    assert!(error_above, "an `image failed` line above the view in some frame");
    // No log line for a successful image at the default level.
    for frame in &frames {
        assert!(!plain(frame).contains("image copied"), "a success line was logged:\n{}", plain(frame));
    }
    // Colours are on (NO_COLOR unset): the error's level at least.
    assert!(frames.iter().any(|f| f.contains("\x1b[")), "no colour on a terminal without NO_COLOR");

    // The view is cleared and the summary is the last thing on screen.
    let (screen, code) = last_screen(&frames);
    assert_eq!(code, 1, "one image failed of six:\n{}", screen.join("\n"));
    assert!(screen.last().unwrap().starts_with("total: 6 mappings"), "{}", screen.join("\n"));
    assert!(screen.iter().all(|l| !l.starts_with("images ") && !l.contains("  sha256:")), "{}", screen.join("\n"));
    assert!(screen.iter().any(|l| l.contains("images 5 synced, 0 up to date, 1 failed")), "{}", screen.join("\n"));
    assert_eq!(corpus.target.count("PUT", "/manifests/1.0"), GOOD, "the good images are tagged");
}

#[tokio::test]
async fn no_color_leaves_the_view_and_the_logs_without_escape_colours() {
    let corpus = slowed_corpus().await;
    let terminal = Terminal::run(ocync_bin(), &["sync", "--config", &corpus.config.path], &[("NO_COLOR", "1")]);
    let frames = frames(&terminal);
    assert!(frames.iter().any(|f| overall(f).is_some()), "the view is still drawn");
    assert!(frames.iter().any(|f| plain(f).contains("image failed")), "the error is still logged");
    for frame in &frames {
        assert!(!frame.contains('\x1b'), "an escape sequence with NO_COLOR set:\n{frame:?}");
    }
}

#[tokio::test]
async fn no_progress_and_json_logs_turn_the_view_off_and_keep_every_log_line() {
    for (flag, copied_line) in [("--no-progress", "image copied"), ("--log-format=json", "\"image copied\"")] {
        let corpus = slowed_corpus().await;
        let terminal = Terminal::run(ocync_bin(), &["sync", flag, "--config", &corpus.config.path], &[]);
        let frames = frames(&terminal);
        assert!(frames.iter().all(|f| overall(f).is_none()), "{flag}: a view was drawn");
        let (screen, code) = last_screen(&frames);
        assert_eq!(code, 1, "{flag}");
        let successes = screen.iter().filter(|l| l.contains(copied_line)).count();
        assert_eq!(successes, GOOD, "{flag}: one line per copied image, as without a terminal:\n{}", screen.join("\n"));
    }
}

#[tokio::test]
async fn with_stderr_in_a_file_no_escape_sequence_is_written_and_the_lines_are_unchanged() {
    let corpus = slowed_corpus().await;
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("stderr.log");
    let status = Command::new(ocync_bin())
        .args(["sync", "--config", &corpus.config.path])
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&path).unwrap())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1));
    let written = std::fs::read(&path).unwrap();
    assert!(
        !written.contains(&0x1b),
        "an escape sequence in redirected stderr:\n{}",
        String::from_utf8_lossy(&written)
    );
    let text = String::from_utf8(written).unwrap();
    assert_eq!(text.lines().filter(|l| l.contains(" INFO ") && l.contains("image copied")).count(), GOOD, "{text}");
    assert_eq!(text.lines().filter(|l| l.contains(" ERROR ") && l.contains("image failed")).count(), 1, "{text}");
}

#[tokio::test]
async fn copy_on_a_terminal_shows_its_blobs_and_ends_with_the_summary() {
    let corpus = slowed_corpus().await;
    let source = corpus.proxy.reference("team/app0:1.0");
    let destination = format!("http://{}/copied/app0", corpus.target.host);
    let terminal = Terminal::run(ocync_bin(), &["copy", &source, &destination], &[]);
    let frames = frames(&terminal);
    let views: Vec<(usize, u64, u64)> = frames.iter().filter_map(|f| overall(f)).collect();
    assert!(views.iter().any(|&(_, done, planned)| (done, planned) == (0, 1)), "one image to copy: {views:?}");
    let blob_line = frames.iter().flat_map(|f| lines(f)).any(|l| l.trim_start().starts_with("team/app0:1.0  sha256:"));
    assert!(
        blob_line,
        "a blob of the image in flight, with bytes of size:\n{}",
        frames.iter().map(|f| plain(f)).collect::<Vec<_>>().join("\n----\n")
    );
    let (screen, code) = last_screen(&frames);
    assert_eq!(code, 0, "{}", screen.join("\n"));
    assert!(screen.last().unwrap().starts_with("copied "), "the summary last:\n{}", screen.join("\n"));
    assert!(screen.iter().all(|l| !l.contains("image copied")), "{}", screen.join("\n"));
}

#[tokio::test]
async fn plan_on_a_terminal_prints_the_plan_and_nothing_else() {
    let corpus = slowed_corpus().await;
    let terminal = Terminal::run(ocync_bin(), &["plan", "--config", &corpus.config.path], &[]);
    let frames = frames(&terminal);
    assert!(frames.iter().all(|f| overall(f).is_none()), "no view for a plan");
    let (screen, code) = last_screen(&frames);
    assert_eq!(code, 0, "{}", screen.join("\n"));
    assert!(screen.last().unwrap().starts_with("totals: 6 image(s) to copy"), "{}", screen.join("\n"));
    assert!(screen.iter().all(|l| !l.contains(" INFO ") && !l.contains(" DEBUG ")), "{}", screen.join("\n"));
}
