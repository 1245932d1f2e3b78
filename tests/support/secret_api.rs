//! A small stand-in for the Kubernetes API's Secret endpoints (no API server can run here),
//! reached by a real Kubernetes client through a temporary kubeconfig at
//! `http://127.0.0.1:PORT`:
//!
//! - `GET    /api/v1/namespaces/{ns}/secrets/{name}`: the object or 404;
//! - `POST   /api/v1/namespaces/{ns}/secrets`: create, 409 `AlreadyExists` if present;
//! - `PUT    /api/v1/namespaces/{ns}/secrets/{name}`: replace, 409 `Conflict` unless the
//!   body's `metadata.resourceVersion` is the stored one;
//! - `PATCH  /api/v1/namespaces/{ns}/secrets/{name}`: JSON merge patch, 409 if it names a
//!   stale `resourceVersion`.
//!
//! Every request must carry `Authorization: Bearer <token>` (else 401). A test can make the
//! next writes meet a concurrent writer ([`SecretApi::conflicts`]): the stored Secret is
//! changed and the write answered 409, as a real API server would.
//!
//! Like the token server it runs on a plain OS thread with a blocking listener, so a test's
//! blocking `Command` never starves it.

use std::collections::BTreeMap;
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::http;

/// One request the API answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiRequest {
    /// `GET`, `POST`, `PUT`, `PATCH`.
    pub method: String,
    /// The path without the query.
    pub path: String,
    /// The status answered.
    pub status: u16,
}

#[derive(Default)]
struct State {
    secrets: BTreeMap<(String, String), Value>,
    version: u64,
    /// `data` a concurrent writer puts in place before each of the next writes, which then
    /// get 409, and how many writes are left to spoil.
    concurrent: Option<(BTreeMap<String, Vec<u8>>, usize)>,
    log: Vec<ApiRequest>,
}

impl State {
    fn next_version(&mut self) -> String {
        self.version += 1;
        self.version.to_string()
    }

    fn store(&mut self, namespace: &str, mut secret: Value) -> Value {
        secret["metadata"]["resourceVersion"] = json!(self.next_version());
        secret["metadata"]["namespace"] = json!(namespace);
        secret["kind"] = json!("Secret");
        secret["apiVersion"] = json!("v1");
        let name = secret["metadata"]["name"].as_str().unwrap_or_default().to_string();
        self.secrets.insert((namespace.to_string(), name), secret.clone());
        secret
    }
}

/// The running fake API; stopped when dropped.
pub struct SecretApi {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The bearer token clients must present.
    pub token: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn encode_data(data: &BTreeMap<String, Vec<u8>>) -> Value {
    data.iter()
        .map(|(key, bytes)| (key.clone(), json!(STANDARD.encode(bytes))))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

impl SecretApi {
    /// Starts the API on a free loopback port, accepting `token`.
    pub fn start(token: &str) -> SecretApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the Secret API");
        listener.set_nonblocking(true).expect("non-blocking listener");
        let url = format!("http://{}", listener.local_addr().expect("local addr"));
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop, token) = (state.clone(), stop.clone(), token.to_string());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let _ = serve(stream, &state, &token);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        SecretApi { url, token: token.to_string(), state, stop, thread: Some(thread) }
    }

    /// Writes a kubeconfig for this API into `dir` and returns its path.
    pub fn kubeconfig(&self, dir: &Path, token: &str) -> PathBuf {
        kubeconfig(dir, &self.url, token, None)
    }

    /// Stores a Secret as if someone had created it.
    pub fn insert(&self, namespace: &str, name: &str, type_: &str, data: &BTreeMap<String, Vec<u8>>) {
        let secret = json!({"metadata": {"name": name, "labels": {"owner": "someone-else"}}, "type": type_, "data": encode_data(data)});
        self.state.lock().unwrap().store(namespace, secret);
    }

    /// The stored Secret, if any.
    pub fn secret(&self, namespace: &str, name: &str) -> Option<Value> {
        self.state.lock().unwrap().secrets.get(&(namespace.to_string(), name.to_string())).cloned()
    }

    /// The decoded bytes of one data key of a stored Secret.
    pub fn data(&self, namespace: &str, name: &str, key: &str) -> Option<Vec<u8>> {
        let secret = self.secret(namespace, name)?;
        STANDARD.decode(secret["data"][key].as_str()?).ok()
    }

    /// The next `times` writes (PUT or PATCH) each meet a concurrent writer that sets `data` first.
    pub fn conflicts(&self, times: usize, data: BTreeMap<String, Vec<u8>>) {
        self.state.lock().unwrap().concurrent = Some((data, times));
    }

    /// Requests answered so far.
    pub fn requests(&self) -> Vec<ApiRequest> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for SecretApi {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Writes `dir/kubeconfig` for the API at `server` with a bearer `token`, trusting
/// `certificate_authority` (a PEM file) for `https://` servers; returns its path.
pub fn kubeconfig(dir: &Path, server: &str, token: &str, certificate_authority: Option<&Path>) -> PathBuf {
    let path = dir.join("kubeconfig");
    let ca =
        certificate_authority.map(|ca| format!("    certificate-authority: {}\n", ca.display())).unwrap_or_default();
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {server}\n{ca}users:\n- name: refresher\n  user:\n    token: {token}\n\
         contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: refresher\ncurrent-context: fake\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": reason, "code": code});
    (code, body)
}

/// RFC 7386 JSON merge patch.
fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(patch) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let object = target.as_object_mut().expect("made an object");
    for (key, value) in patch {
        if value.is_null() {
            object.remove(key);
        } else {
            merge_patch(object.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn answer(state: &mut State, method: &str, path: &str, body: &[u8]) -> (u16, Value) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (namespace, name) = match segments.as_slice() {
        ["api", "v1", "namespaces", namespace, "secrets"] => (*namespace, None),
        ["api", "v1", "namespaces", namespace, "secrets", name] => (*namespace, Some(*name)),
        _ => return status(404, "NotFound", &format!("no route {path}")),
    };
    let parsed: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let key = |name: &str| (namespace.to_string(), name.to_string());
    match (method, name) {
        ("GET", Some(name)) => match state.secrets.get(&key(name)) {
            Some(secret) => (200, secret.clone()),
            None => status(404, "NotFound", &format!("secrets \"{name}\" not found")),
        },
        ("POST", None) => {
            let name = parsed["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if state.secrets.contains_key(&key(&name)) {
                return status(409, "AlreadyExists", &format!("secrets \"{name}\" already exists"));
            }
            (201, state.store(namespace, parsed))
        }
        ("PUT" | "PATCH", Some(name)) => {
            let Some(current) = state.secrets.get(&key(name)).cloned() else {
                return status(404, "NotFound", &format!("secrets \"{name}\" not found"));
            };
            if let Some((data, left)) = state.concurrent.take() {
                let mut changed = current;
                changed["data"] = encode_data(&data);
                if left > 1 {
                    state.concurrent = Some((data, left - 1));
                }
                state.store(namespace, changed);
                return status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            let asked = parsed["metadata"]["resourceVersion"].as_str();
            let stale = match method {
                "PUT" => asked != current["metadata"]["resourceVersion"].as_str(),
                _ => asked.is_some_and(|v| Some(v) != current["metadata"]["resourceVersion"].as_str()),
            };
            if stale {
                return status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            let updated = if method == "PUT" {
                parsed
            } else {
                let mut merged = current;
                merge_patch(&mut merged, &parsed);
                merged
            };
            (200, state.store(namespace, updated))
        }
        _ => status(405, "MethodNotAllowed", &format!("{method} {path} is not served here")),
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>, token: &str) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // A connection closed before its request line is answered like an empty request.
    let request = http::read_request(&mut BufReader::new(&stream))?.unwrap_or_default();
    let mut state = state.lock().unwrap();
    let (code, reply) = if request.header("authorization") == Some(&format!("Bearer {token}")) {
        answer(&mut state, &request.method, &request.path, &request.body)
    } else {
        status(401, "Unauthorized", "Unauthorized")
    };
    state.log.push(ApiRequest { method: request.method, path: request.path, status: code });
    drop(state);
    let reason = if code < 300 { "OK" } else { "Error" };
    let mut stream = stream;
    http::write_response(
        &mut stream,
        &format!("{code} {reason}"),
        &[("Content-Type", "application/json")],
        reply.to_string().as_bytes(),
    )
}
