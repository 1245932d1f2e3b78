//! A small HTTP/1.1 fault proxy in front of a real registry: forwards requests, or answers
//! them as a rule says (an error status, a reset connection, a rewritten `Location`), and
//! records what it saw. One request per connection, so framing stays trivial.
//!
//! It runs on plain threads, not tokio tasks: tests run the `ocync` binary with blocking
//! `std::process::Command`, which would starve a current-thread runtime.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::http;

/// A request as the proxy saw it (body already read).
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// `GET`, `PUT`, …
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Length of the body received.
    pub body_len: usize,
    /// The body received (for rules that answer by its content, like a token exchange).
    pub body: Vec<u8>,
    /// The `Authorization` header, if any (for rules that play a registry enforcing tokens).
    pub authorization: Option<String>,
    /// When the request arrived.
    pub at: std::time::Instant,
}

/// What to do with a request.
pub enum Action {
    /// Pass it to the registry unchanged.
    Forward,
    /// Pass it on, and make an absolute `Location` in the answer relative.
    ForwardWithRelativeLocation,
    /// Pass it on with another path and query.
    ForwardTo(String),
    /// Answer it here.
    Respond {
        /// HTTP status.
        status: u16,
        /// Extra headers.
        headers: Vec<(String, String)>,
        /// Body.
        body: String,
    },
    /// Close the connection without answering.
    Reset,
    /// Never answer (the connection is held open for a minute).
    Stall,
    /// Forward, but send only the first `n` bytes of the answer, then hold the connection.
    StallAfter(usize),
    /// Forward, but send only the first `n` bytes of the answer, then close the connection.
    CutAfter(usize),
    /// Wait, then forward.
    Delay(std::time::Duration),
    /// Forward, adding these headers to the answer.
    ForwardAddingHeaders(Vec<(String, String)>),
    /// Forward, flipping one byte in the middle of the answer's body.
    CorruptBody,
    /// Forward, but keep only the first half of the body and a `Content-Length` to match, so
    /// the answer looks complete.
    TruncateBody,
}

/// How long a stalled connection is held.
const STALL: std::time::Duration = std::time::Duration::from_secs(60);

type Rule = dyn Fn(&SeenRequest) -> Action + Send + Sync;

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    /// `127.0.0.1:PORT` to point clients at.
    pub host: String,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (`127.0.0.1:PORT`) applying `rule` to each request.
    pub fn start(upstream: &str, rule: impl Fn(&SeenRequest) -> Action + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy port");
        let host = listener.local_addr().expect("proxy address").to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let rule: Arc<Rule> = Arc::new(rule);
        let upstream = upstream.to_string();
        let (seen_in, stop_in, proxy_host) = (seen.clone(), stop.clone(), host.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_in.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let (rule, seen, upstream, proxy_host) =
                    (rule.clone(), seen_in.clone(), upstream.clone(), proxy_host.clone());
                std::thread::spawn(move || {
                    let _ = handle(stream, &upstream, &proxy_host, &*rule, &seen);
                });
            }
        });
        FaultProxy { host, seen, stop, thread: Some(thread) }
    }

    /// Requests seen so far.
    pub fn seen(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("proxy log lock").clone()
    }

    /// `http://127.0.0.1:PORT/<path>`.
    pub fn reference(&self, path: &str) -> String {
        format!("http://{}/{path}", self.host)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(&self.host);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn handle(
    mut client: TcpStream,
    upstream: &str,
    proxy_host: &str,
    rule: &Rule,
    seen: &Mutex<Vec<SeenRequest>>,
) -> std::io::Result<()> {
    // A connection closed before its request line is handled like an empty request.
    let http::Request { method, target, headers, body, .. } =
        http::read_request(&mut BufReader::new(client.try_clone()?))?.unwrap_or_default();
    let header = |name: &str| headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone());
    let request = SeenRequest {
        method: method.clone(),
        target: target.clone(),
        body_len: body.len(),
        body,
        authorization: header("authorization"),
        at: std::time::Instant::now(),
    };
    seen.lock().expect("proxy log lock").push(request.clone());

    let mut target = target;
    let mut stall_after = None;
    let mut damage = None;
    let mut extra_headers = Vec::new();
    let relative_location = match rule(&request) {
        Action::Forward => false,
        Action::Delay(wait) => {
            std::thread::sleep(wait);
            false
        }
        Action::ForwardAddingHeaders(headers) => {
            extra_headers = headers;
            false
        }
        action @ (Action::CutAfter(_) | Action::CorruptBody | Action::TruncateBody) => {
            damage = Some(action);
            false
        }
        Action::Stall => {
            std::thread::sleep(STALL);
            return Ok(());
        }
        Action::StallAfter(n) => {
            stall_after = Some(n);
            false
        }
        Action::ForwardWithRelativeLocation => true,
        Action::ForwardTo(rewritten) => {
            target = rewritten;
            false
        }
        Action::Reset => return Ok(()),
        Action::Respond { status, headers, body } => {
            let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            return http::write_response(&mut client, &format!("{status} Fault"), &headers, body.as_bytes());
        }
    };

    let mut server = TcpStream::connect(upstream)?;
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    for (name, value) in &headers {
        if ["connection", "transfer-encoding", "content-length"].iter().any(|h| name.eq_ignore_ascii_case(h)) {
            continue;
        }
        head += &format!("{name}: {value}\r\n");
    }
    head += &format!("Content-Length: {}\r\nConnection: close\r\n\r\n", request.body.len());
    server.write_all(head.as_bytes())?;
    server.write_all(&request.body)?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    if relative_location {
        response = make_location_relative(&response, upstream, proxy_host);
    }
    if !extra_headers.is_empty()
        && let Some(end_of_status) = response.windows(2).position(|w| w == b"\r\n")
    {
        let added: String = extra_headers.iter().map(|(name, value)| format!("\r\n{name}: {value}")).collect();
        response.splice(end_of_status..end_of_status, added.into_bytes());
    }
    if let Some(n) = stall_after {
        client.write_all(&response[..n.min(response.len())])?;
        client.flush()?;
        std::thread::sleep(STALL);
        return Ok(());
    }
    match damage {
        Some(Action::CutAfter(n)) => return client.write_all(&response[..n.min(response.len())]),
        Some(Action::CorruptBody) => {
            let body_start = body_offset(&response);
            let middle = body_start + (response.len() - body_start) / 2;
            if middle < response.len() {
                response[middle] ^= 0xff;
            }
        }
        Some(Action::TruncateBody) => response = truncate_body(&response),
        _ => {}
    }
    client.write_all(&response)
}

/// Where the body of a raw response starts.
fn body_offset(response: &[u8]) -> usize {
    response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |p| p + 4)
}

/// Half the body, with a `Content-Length` that says so.
fn truncate_body(response: &[u8]) -> Vec<u8> {
    let start = body_offset(response);
    let kept = (response.len() - start) / 2;
    let head = String::from_utf8_lossy(&response[..start]).to_string();
    let head: Vec<String> = head
        .split("\r\n")
        .map(|line| {
            if line.to_ascii_lowercase().starts_with("content-length:") {
                format!("Content-Length: {kept}")
            } else {
                line.to_string()
            }
        })
        .collect();
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(&response[start..start + kept]);
    out
}

/// Rewrites `Location: http://<upstream or proxy>/path` to `Location: /path` in a raw response.
fn make_location_relative(response: &[u8], upstream: &str, proxy_host: &str) -> Vec<u8> {
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |p| p + 4);
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let head: String = head
        .split("\r\n")
        .map(|line| {
            if line.to_ascii_lowercase().starts_with("location:") {
                let value = line["location:".len()..].trim();
                let relative = [upstream, proxy_host]
                    .iter()
                    .find_map(|host| value.strip_prefix(&format!("http://{host}")))
                    .unwrap_or(value);
                format!("Location: {relative}")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(&response[split..]);
    out
}

/// Answers `GET /v2/<repository>/tags/list[?n=…&last=…]` the way paginating registries (ECR,
/// GAR, GHCR, Docker Hub) do and distribution 2.8 does not: at most `page_size` of `tags`
/// (sorted) after `last`, with `Link: <…?n=…&last=…>; rel="next"` while more remain. `None`
/// for any other request. The first page's link is a path, later ones a relative reference
/// (`?n=…`), so both forms of `Link` target are followed.
pub fn paginate_tags(request: &SeenRequest, repository: &str, tags: &[&str], page_size: usize) -> Option<Action> {
    let path = format!("/v2/{repository}/tags/list");
    let (request_path, query) = request.target.split_once('?').unwrap_or((&request.target, ""));
    if request.method != "GET" || request_path != path {
        return None;
    }
    let last = url::form_urlencoded::parse(query.as_bytes()).find(|(name, _)| name == "last").map(|(_, v)| v);
    let mut sorted: Vec<&str> = tags.to_vec();
    sorted.sort_unstable();
    let page: Vec<&str> =
        sorted.iter().copied().filter(|tag| last.as_deref().is_none_or(|last| *tag > last)).take(page_size).collect();
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    if let Some(end) = page.last()
        && sorted.last() != Some(end)
    {
        let next = format!("?n={page_size}&last={end}");
        let target = if last.is_none() { format!("{path}{next}") } else { next };
        headers.push(("Link".to_string(), format!("<{target}>; rel=\"next\"")));
    }
    let body = serde_json::json!({ "name": repository, "tags": page }).to_string();
    Some(Action::Respond { status: 200, headers, body })
}
