//! A registry with the OCI 1.1 referrers API, for tests: the fault proxy in front of a real
//! distribution 2.8 (which has no such API), answering `GET /v2/<repo>/referrers/<digest>`
//! for the manifests with a `subject` pushed through it and forwarding everything else.
//! Answers honour `artifactType` and come in pages of [`PAGE`] with a `Link` to the next.
//!
//! Stricter than the spec, so that tests catch a wrong order: a manifest PUT whose `subject`
//! is not in the repository yet is refused with 400 (registries may accept it).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use ocync::oci::{Manifest, Referrer, media_type};

use super::proxy::{Action, FaultProxy, SeenRequest};

/// Descriptors per answer; small, so that pagination is exercised.
pub const PAGE: usize = 2;

type Index = Arc<Mutex<BTreeMap<(String, String), Vec<Referrer>>>>;

/// The proxy and what it learned from pushes.
pub struct ReferrersServer {
    /// The proxy clients talk to.
    pub proxy: FaultProxy,
    index: Index,
}

impl ReferrersServer {
    /// Starts in front of `upstream` (`127.0.0.1:PORT`).
    pub fn start(upstream: &str) -> Self {
        let index: Index = Arc::default();
        let known = index.clone();
        let registry = upstream.to_string();
        let proxy = FaultProxy::start(upstream, move |request| answer(request, &known, &registry));
        ReferrersServer { proxy, index }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        &self.proxy.host
    }

    /// Requests seen so far whose method is `method` and whose path contains `fragment`.
    pub fn count(&self, method: &str, fragment: &str) -> usize {
        self.proxy.seen().iter().filter(|r| r.method == method && r.target.contains(fragment)).count()
    }

    /// Digests of the referrers recorded for `subject` in `repository`.
    pub fn referrers(&self, repository: &str, subject: &str) -> Vec<String> {
        let index = self.index.lock().expect("referrers index lock");
        let key = (repository.to_string(), subject.to_string());
        index.get(&key).map(|list| list.iter().map(|r| r.digest.to_string()).collect()).unwrap_or_default()
    }
}

fn answer(request: &SeenRequest, index: &Index, upstream: &str) -> Action {
    let path = request.target.split('?').next().unwrap_or_default();
    let Some(rest) = path.strip_prefix("/v2/") else { return Action::Forward };
    if request.method == "PUT"
        && let Some((repository, _)) = rest.split_once("/manifests/")
    {
        let manifest = Manifest::from_served(request.body.clone().into(), None, None);
        if let Some((subject, referrer)) = manifest.ok().as_ref().and_then(Referrer::describe) {
            if !has_manifest(upstream, repository, subject.as_str()) {
                let body = format!(
                    "{{\"errors\":[{{\"code\":\"MANIFEST_UNKNOWN\",\"message\":\"subject {subject} is not in {repository} yet\"}}]}}"
                );
                return Action::Respond { status: 400, headers: Vec::new(), body };
            }
            let mut index = index.lock().expect("referrers index lock");
            let list = index.entry((repository.to_string(), subject.to_string())).or_default();
            if !list.iter().any(|r| r.digest == referrer.digest) {
                list.push(referrer);
            }
        }
        return Action::Forward;
    }
    match rest.split_once("/referrers/") {
        Some((repository, subject)) if request.method == "GET" => list(index, repository, subject, &request.target),
        _ => Action::Forward,
    }
}

/// Every manifest type, so the registry answers a HEAD for any of them.
const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
    application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether the registry behind the server has the manifest (a plain-HTTP `HEAD`).
fn has_manifest(upstream: &str, repository: &str, digest: &str) -> bool {
    use std::io::{BufRead, BufReader, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(upstream) else { return false };
    let request = format!(
        "HEAD /v2/{repository}/manifests/{digest} HTTP/1.1\r\nHost: {upstream}\r\nAccept: {ACCEPT}\r\nConnection: close\r\n\r\n"
    );
    let mut status = String::new();
    stream.write_all(request.as_bytes()).is_ok()
        && BufReader::new(stream).read_line(&mut status).is_ok()
        && status.split(' ').nth(1) == Some("200")
}

fn list(index: &Index, repository: &str, subject: &str, target: &str) -> Action {
    let query: BTreeMap<String, String> = target
        .split_once('?')
        .map(|(_, q)| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let artifact_type = query.get("artifactType");
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let all: Vec<Referrer> = index
        .lock()
        .expect("referrers index lock")
        .get(&(repository.to_string(), subject.to_string()))
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| artifact_type.is_none_or(|t| r.artifact_type.as_ref() == Some(t)))
        .collect();
    let shown: Vec<serde_json::Value> = all.iter().skip(page * PAGE).take(PAGE).map(|r| r.descriptor.clone()).collect();
    let body = serde_json::json!({ "schemaVersion": 2, "mediaType": media_type::OCI_INDEX, "manifests": shown });
    let mut headers = vec![("Content-Type".to_string(), media_type::OCI_INDEX.to_string())];
    if artifact_type.is_some() {
        headers.push(("OCI-Filters-Applied".into(), "artifactType".into()));
    }
    if (page + 1) * PAGE < all.len() {
        let mut next = format!("/v2/{repository}/referrers/{subject}?page={}", page + 1);
        if let Some(t) = artifact_type {
            next +=
                &format!("&artifactType={}", url::form_urlencoded::byte_serialize(t.as_bytes()).collect::<String>());
        }
        headers.push(("Link".into(), format!("<{next}>; rel=\"next\"")));
    }
    Action::Respond { status: 200, headers, body: body.to_string() }
}
