//! A fake Microsoft Entra ID token endpoint for workload identity: `POST
//! /{tenant}/oauth2/v2.0/token` with a client-credentials form whose client assertion must
//! equal the current content of the "projected" service-account token file, as the real
//! service checks the assertion against the federated identity it trusts.
//!
//! A good request gets `{"token_type":"Bearer","expires_in":3599,"access_token":…}`. A wrong
//! assertion gets 401 `invalid_client` (AADSTS700211), other mistakes 400 with the error code
//! Entra ID would use. Every request is recorded with its form.
//!
//! Error descriptions deliberately quote the presented assertion, which the real service does
//! not: a client that copies error text into its messages must mask it, and the tests can see
//! whether it does.
//!
//! Like the token server, it runs on a plain thread with a blocking listener, not a tokio task,
//! so tests that block their runtime cannot starve it.

use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::http;

/// The client assertion type Entra ID requires for federated credentials.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The ACR-audience scope the provider should ask for.
pub const ACR_SCOPE: &str = "https://containerregistry.azure.net/.default";

/// One token request the fake answered.
#[derive(Debug, Clone)]
pub struct AadRequest {
    /// `POST`, …
    pub method: String,
    /// The request path (`/{tenant}/oauth2/v2.0/token`).
    pub path: String,
    /// The decoded form fields, in order.
    pub form: Vec<(String, String)>,
    /// The HTTP status answered.
    pub status: u16,
}

impl AadRequest {
    /// The first value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether an access token was issued.
    pub fn granted(&self) -> bool {
        self.status == 200
    }
}

/// What the serving thread checks requests against.
struct Expected {
    tenant: String,
    client_id: String,
    trusted_token_file: PathBuf,
    access_token: String,
    history: Arc<Mutex<Vec<AadRequest>>>,
}

/// A running fake Entra ID; stopped when dropped.
pub struct FakeAad {
    /// `http://127.0.0.1:PORT/`, what `AZURE_AUTHORITY_HOST` would hold.
    pub authority: String,
    /// The tenant it serves.
    pub tenant: String,
    /// The client (application) ID it issues tokens to.
    pub client_id: String,
    /// The access token it issues.
    pub access_token: String,
    history: Arc<Mutex<Vec<AadRequest>>>,
    /// Serves requests; stops the thread when dropped.
    server: http::Server,
}

impl FakeAad {
    /// Starts a fake for `tenant` that issues tokens to `client_id` presenting, as assertion,
    /// what `trusted_token_file` holds at the time of the request (so a rotated file is
    /// honoured, and a client sending a stale copy is refused).
    pub fn start(tenant: &str, client_id: &str, trusted_token_file: &Path) -> FakeAad {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the fake Entra ID");
        let addr = listener.local_addr().expect("fake Entra ID address");
        let history = Arc::new(Mutex::new(Vec::new()));
        let access_token = format!("fake-entra-access-token-{:032x}", rand::random::<u128>());
        let expected = Expected {
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            trusted_token_file: trusted_token_file.to_path_buf(),
            access_token: access_token.clone(),
            history: Arc::clone(&history),
        };
        let server =
            http::Server::start(listener, "fake-aad", "fake Entra ID", move |stream| handle(stream, &expected));
        FakeAad {
            authority: format!("http://{addr}/"),
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            access_token,
            history,
            server,
        }
    }

    /// Every request answered so far, in order.
    pub fn history(&self) -> Vec<AadRequest> {
        self.history.lock().expect("fake Entra ID history lock").clone()
    }
}

fn handle(mut stream: TcpStream, expected: &Expected) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let Some(request) = http::read_request(&mut BufReader::new(stream.try_clone()?))? else {
        return Ok(()); // a bare connect, such as the one that stops the server
    };
    let content_type = request.header("content-type").unwrap_or("").to_ascii_lowercase();
    let (method, path) = (request.method, request.target);
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body).into_owned().collect();

    let (status, answer) = answer(expected, &method, &path, &content_type, &form);
    expected.history.lock().expect("fake Entra ID history lock").push(AadRequest { method, path, form, status });
    write_response(&mut stream, status, &answer)
}

/// Checks one request the way Entra ID would, and says what to answer.
fn answer(
    expected: &Expected,
    method: &str,
    path: &str,
    content_type: &str,
    form: &[(String, String)],
) -> (u16, serde_json::Value) {
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let error = |status: u16, code: &str, description: String| {
        (status, json!({ "error": code, "error_description": description, "error_codes": [] }))
    };
    if method != "POST" || path != format!("/{}/oauth2/v2.0/token", expected.tenant) {
        return error(404, "invalid_request", format!("AADSTS90002: no token endpoint at {method} {path}"));
    }
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return error(400, "invalid_request", format!("AADSTS900144: the body must be a form, not {content_type:?}"));
    }
    if field("grant_type") != Some("client_credentials") {
        return error(400, "unsupported_grant_type", format!("AADSTS70003: grant type {:?}", field("grant_type")));
    }
    if field("client_id") != Some(expected.client_id.as_str()) {
        return error(400, "unauthorized_client", format!("AADSTS700016: unknown client {:?}", field("client_id")));
    }
    if field("client_assertion_type") != Some(JWT_BEARER) {
        return error(
            400,
            "invalid_request",
            format!("AADSTS50027: client_assertion_type {:?}", field("client_assertion_type")),
        );
    }
    if field("scope") != Some(ACR_SCOPE) {
        return error(400, "invalid_scope", format!("AADSTS70011: scope {:?}", field("scope")));
    }
    let trusted = std::fs::read_to_string(&expected.trusted_token_file).unwrap_or_default();
    let presented = field("client_assertion").unwrap_or("");
    if trusted.is_empty() || presented != trusted {
        // The real service does not echo the assertion; this one does, to catch clients
        // that would print it.
        return error(
            401,
            "invalid_client",
            format!("AADSTS700211: No matching federated identity record found for presented assertion {presented}"),
        );
    }
    (
        200,
        json!({
            "token_type": "Bearer",
            "expires_in": 3599,
            "ext_expires_in": 3599,
            "access_token": expected.access_token,
        }),
    )
}

fn write_response(stream: &mut TcpStream, status: u16, body: &serde_json::Value) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let content_type = [("Content-Type", "application/json; charset=utf-8")];
    http::write_response(stream, &format!("{status} {reason}"), &content_type, body.to_string().as_bytes())
}
