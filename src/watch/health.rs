//! The health and metrics endpoints of watch mode: `/healthz` (liveness: the loop is alive and
//! no cycle is stuck), `/readyz` (a config is loaded and the first cycle has started) and
//! `/metrics` (Prometheus text). A deliberately small HTTP/1.1 responder: one request per
//! connection, GET only.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::metrics::Metrics;
use crate::cancel::Cancel;

/// The longest request head read; health checks are tiny.
const MAX_REQUEST: usize = 8 * 1024;

/// What the endpoints report, shared with the loop.
#[derive(Debug)]
pub struct State {
    /// Set once a config is loaded and the first cycle has started.
    pub ready: AtomicBool,
    /// When the running cycle started; `None` between cycles.
    pub cycle_started: Mutex<Option<Instant>>,
    /// A cycle running longer than this makes liveness fail.
    pub stuck_after: Duration,
    /// Counters for `/metrics`.
    pub metrics: Mutex<Metrics>,
}

impl State {
    /// Fresh state: not ready, no cycle.
    pub fn new(stuck_after: Duration) -> Self {
        State { ready: AtomicBool::new(false), cycle_started: Mutex::new(None), stuck_after, metrics: Mutex::default() }
    }

    fn liveness(&self) -> Result<(), String> {
        match *self.cycle_started.lock().expect("state lock poisoned") {
            Some(started) if started.elapsed() > self.stuck_after => {
                Err(format!("a cycle has been running for {}s", started.elapsed().as_secs()))
            }
            _ => Ok(()),
        }
    }
}

/// Serves until `cancel` is set.
pub async fn serve(listener: TcpListener, state: Arc<State>, cancel: Cancel) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = cancel.cancelled() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let state = state.clone();
        tokio::spawn(async move {
            let _ = respond(stream, &state).await;
        });
    }
}

async fn respond(mut stream: tokio::net::TcpStream, state: &State) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buffer = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer))
            .await
            .map_err(std::io::Error::other)??;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buffer[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = route(method, path, state);
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    if method != "HEAD" {
        stream.write_all(body.as_bytes()).await?;
    }
    stream.shutdown().await
}

fn route(method: &str, path: &str, state: &State) -> (&'static str, &'static str, String) {
    const TEXT: &str = "text/plain; charset=utf-8";
    if method != "GET" && method != "HEAD" {
        return ("405 Method Not Allowed", TEXT, "only GET\n".into());
    }
    match path.split('?').next().unwrap_or(path) {
        "/healthz" => match state.liveness() {
            Ok(()) => ("200 OK", TEXT, "ok\n".into()),
            Err(reason) => ("503 Service Unavailable", TEXT, format!("{reason}\n")),
        },
        "/readyz" if state.ready.load(Ordering::Relaxed) => ("200 OK", TEXT, "ready\n".into()),
        "/readyz" => ("503 Service Unavailable", TEXT, "no config loaded or no cycle started yet\n".into()),
        "/metrics" => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            state.metrics.lock().expect("state lock poisoned").render(),
        ),
        _ => ("404 Not Found", TEXT, "not found\n".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_and_liveness_follow_the_loop() {
        let state = State::new(Duration::from_millis(10));
        assert_eq!(route("GET", "/readyz", &state).0, "503 Service Unavailable");
        state.ready.store(true, Ordering::Relaxed);
        assert_eq!(route("GET", "/readyz", &state).0, "200 OK");
        assert_eq!(route("GET", "/healthz", &state).0, "200 OK");
        *state.cycle_started.lock().unwrap() = Some(Instant::now() - Duration::from_secs(1));
        let (status, _, body) = route("GET", "/healthz", &state);
        assert_eq!(status, "503 Service Unavailable");
        assert!(body.contains("running for"), "{body}");
        assert_eq!(route("POST", "/healthz", &state).0, "405 Method Not Allowed");
        assert_eq!(route("GET", "/nope", &state).0, "404 Not Found");
    }
}
