//! A hostile registry: a front for a real registry that forwards most requests and answers
//! the ones a rule picks the way a compromised or broken registry would: a body of a gigabyte
//! (generated as it is sent, never stored), a `Content-Length` it never honours, a body that
//! drips one byte at a time.
//!
//! The accept loop is [`http::Server`]'s; each connection then gets a plain thread of its own,
//! so a dripping answer never holds up the others (and a test blocked on
//! `std::process::Command` cannot starve it).

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http::{self, Request};

/// How to answer one request.
pub enum Reply {
    /// Pass it to the real registry and relay its answer.
    Forward,
    /// `status` with `size` filler bytes, chunked (no `Content-Length`), as fast as the client
    /// takes them.
    Endless { status: u16, content_type: &'static str, size: u64 },
    /// `status` with `Content-Length: length`, then nothing (the connection held for a minute).
    Announce { status: u16, content_type: &'static str, length: u64 },
    /// `status` with `body` (its true `Content-Length`), one byte every `every`.
    Drip { status: u16, content_type: &'static str, body: Vec<u8>, every: Duration },
    /// `status` with `body`, at once.
    Respond { status: u16, content_type: &'static str, body: Vec<u8> },
}

type Rule = dyn Fn(&Request) -> Reply + Send + Sync;

/// A running hostile front; stops accepting when dropped (answers in progress end when the
/// client goes away).
pub struct HostileRegistry {
    /// `127.0.0.1:PORT` to point clients at.
    pub host: String,
    seen: Arc<Mutex<Vec<Request>>>,
    body_bytes_sent: Arc<AtomicU64>,
    /// Ends the generated and dripping answers still being sent when the test is done.
    stop: Arc<AtomicBool>,
    _server: http::Server,
}

impl HostileRegistry {
    /// Starts a front for `upstream` (`127.0.0.1:PORT`) answering each request as `rule` says.
    pub fn start(upstream: &str, rule: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind hostile registry port");
        let host = listener.local_addr().expect("hostile registry address").to_string();
        let rule: Arc<Rule> = Arc::new(rule);
        let (seen, body_bytes_sent, stop) = (Arc::default(), Arc::default(), Arc::new(AtomicBool::new(false)));
        let shared = (Arc::clone(&seen), Arc::clone(&body_bytes_sent), Arc::clone(&stop), upstream.to_string());
        let server = http::Server::start(listener, "hostile-registry", "hostile registry", move |stream| {
            let (seen, sent, stop, upstream) = &shared;
            let (rule, seen, sent, stop, upstream) =
                (Arc::clone(&rule), Arc::clone(seen), Arc::clone(sent), Arc::clone(stop), upstream.clone());
            std::thread::spawn(move || {
                // A client that hangs up mid-answer is what most tests provoke.
                let _ = serve(stream, &upstream, &*rule, &seen, &sent, &stop);
            });
            Ok(())
        });
        HostileRegistry { host, seen, body_bytes_sent, stop, _server: server }
    }

    /// Requests received so far.
    pub fn seen(&self) -> Vec<Request> {
        self.seen.lock().expect("hostile registry log").clone()
    }

    /// Body bytes of hostile answers the client accepted so far (forwarded answers not counted).
    pub fn body_bytes_sent(&self) -> u64 {
        self.body_bytes_sent.load(Ordering::SeqCst)
    }

    /// `http://127.0.0.1:PORT/<path>`.
    pub fn reference(&self, path: &str) -> String {
        format!("http://{}/{path}", self.host)
    }
}

impl Drop for HostileRegistry {
    fn drop(&mut self) {
        // The server stops accepting when it is dropped, right after this.
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(
    stream: TcpStream,
    upstream: &str,
    rule: &Rule,
    seen: &Mutex<Vec<Request>>,
    sent: &AtomicU64,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let Some(request) = http::read_request(&mut reader)? else { return Ok(()) };
    seen.lock().expect("hostile registry log").push(request.clone());
    let mut client = stream;
    let head = |status: u16, content_type: &str, framing: String| {
        format!("HTTP/1.1 {status} Hostile\r\nContent-Type: {content_type}\r\n{framing}Connection: close\r\n\r\n")
    };
    let body_allowed = request.method != "HEAD";
    match rule(&request) {
        Reply::Forward => forward(&request, upstream, &mut client),
        Reply::Respond { status, content_type, body } => {
            let headers = [("Content-Type", content_type)];
            http::write_response(&mut client, &format!("{status} Hostile"), &headers, &body)
        }
        Reply::Endless { status, content_type, size } => {
            client.write_all(head(status, content_type, "Transfer-Encoding: chunked\r\n".into()).as_bytes())?;
            let chunk = vec![b'{'; 64 * 1024];
            let mut left = size;
            while left > 0 && body_allowed && !stop.load(Ordering::SeqCst) {
                let n = left.min(chunk.len() as u64) as usize;
                client.write_all(format!("{n:x}\r\n").as_bytes())?;
                client.write_all(&chunk[..n])?;
                client.write_all(b"\r\n")?;
                sent.fetch_add(n as u64, Ordering::SeqCst);
                left -= n as u64;
            }
            client.write_all(b"0\r\n\r\n")
        }
        Reply::Announce { status, content_type, length } => {
            client.write_all(head(status, content_type, format!("Content-Length: {length}\r\n")).as_bytes())?;
            hold(&mut client, Duration::from_secs(60), stop);
            Ok(())
        }
        Reply::Drip { status, content_type, body, every } => {
            let length = if body_allowed { body.len() } else { 0 };
            client.write_all(head(status, content_type, format!("Content-Length: {length}\r\n")).as_bytes())?;
            for byte in body.iter().take(length) {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(every);
                client.write_all(&[*byte])?;
                client.flush()?;
                sent.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }
    }
}

/// Keeps the connection open without sending anything, until `limit`, the client hanging up,
/// or the server stopping.
fn hold(client: &mut TcpStream, limit: Duration, stop: &AtomicBool) {
    let step = Duration::from_millis(200);
    let _ = client.set_read_timeout(Some(step));
    let mut waited = Duration::ZERO;
    let mut scratch = [0u8; 1024];
    while waited < limit && !stop.load(Ordering::SeqCst) {
        match client.read(&mut scratch) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
        waited += step;
    }
}

/// Sends `request` to the real registry with `Connection: close` and relays its whole answer.
fn forward(request: &Request, upstream: &str, client: &mut TcpStream) -> std::io::Result<()> {
    let mut registry = TcpStream::connect(upstream)?;
    let mut head = format!("{} {} HTTP/1.1\r\n", request.method, request.target);
    for (name, value) in &request.headers {
        let framing = ["connection", "content-length", "transfer-encoding"];
        if !framing.iter().any(|f| name.eq_ignore_ascii_case(f)) {
            head += &format!("{name}: {value}\r\n");
        }
    }
    head += &format!("Content-Length: {}\r\nConnection: close\r\n\r\n", request.body.len());
    registry.write_all(head.as_bytes())?;
    registry.write_all(&request.body)?;
    std::io::copy(&mut registry, client)?;
    client.flush()
}
