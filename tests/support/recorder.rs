//! The "other origin" a hostile registry points requests at: a listener on its own loopback
//! port that records every request it gets, `Authorization` included, and answers each with a
//! 401 whose Bearer challenge names a realm on itself, as a host phishing for credentials would.

use std::io::BufReader;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use super::http::{self, Request, Server};

/// A running recorder; stopped when dropped.
pub struct Recorder {
    /// `127.0.0.1:PORT`.
    pub host: String,
    requests: Arc<Mutex<Vec<Request>>>,
    _server: Server,
}

impl Recorder {
    /// Starts a recorder on a free loopback port.
    pub fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the recorder");
        let host = listener.local_addr().expect("recorder address").to_string();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let challenge = format!("Bearer realm=\"http://{host}/token\",service=\"other-origin\"");
        let seen = Arc::clone(&requests);
        let server = Server::start(listener, "recorder", "recorder", move |stream| {
            let mut reader = BufReader::new(stream.try_clone()?);
            let Some(request) = http::read_request(&mut reader)? else { return Ok(()) };
            seen.lock().expect("recorder lock").push(request);
            let mut stream = stream;
            http::write_response(&mut stream, "401 Unauthorized", &[("WWW-Authenticate", challenge.as_str())], b"")
        });
        Recorder { host, requests, _server: server }
    }

    /// `http://127.0.0.1:PORT/<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}/{path}", self.host)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("recorder lock").clone()
    }

    /// The requests received so far that carried an `Authorization` header, as
    /// `METHOD target`.
    pub fn authorized(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.header("authorization").is_some())
            .map(|r| format!("{} {}", r.method, r.target))
            .collect()
    }
}
