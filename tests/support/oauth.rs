//! A small Google-style OAuth2 token endpoint (`POST /token`), so Google credentials files can
//! point their `token_uri` at loopback and be exercised for real.
//!
//! Two grants are served, like `oauth2.googleapis.com/token`:
//! - `urn:ietf:params:oauth:grant-type:jwt-bearer` (service account keys): the assertion's
//!   RS256 signature is checked with `openssl dgst -verify` against the public key of the
//!   key it names in `kid`, and its `aud` must be this endpoint;
//! - `refresh_token` (`authorized_user` files, gcloud logins), form or JSON encoded.
//!
//! A granted request gets `{"access_token", "expires_in": 3600, "token_type": "Bearer"}`; a
//! refused one gets 400 with a standard `{"error", "error_description"}`. Every request is
//! recorded.
//!
//! Like the token server, it runs on a plain OS thread with a blocking listener, not a tokio
//! task, so a test's blocking calls can never starve it.

use std::collections::{BTreeMap, HashMap};
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::http;
use super::tls::pipe_openssl;
use super::tools::require;

/// `expires_in` of issued access tokens.
pub const ACCESS_TOKEN_LIFETIME_SECS: u64 = 3600;

/// The JWT bearer grant type.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// One request the endpoint answered.
#[derive(Debug, Clone)]
pub struct OAuthRequest {
    /// `POST`, …
    pub method: String,
    /// The request path, without a query.
    pub path: String,
    /// The body's parameters (form fields, or JSON members that are strings).
    pub params: BTreeMap<String, String>,
    /// Whether an access token was issued.
    pub granted: bool,
    /// The OAuth `error` of a refusal.
    pub error: Option<String>,
}

impl OAuthRequest {
    /// The `grant_type` parameter.
    pub fn grant_type(&self) -> Option<&str> {
        self.params.get("grant_type").map(String::as_str)
    }

    /// The decoded `(header, claims)` of a JWT bearer assertion.
    pub fn assertion(&self) -> Option<(Value, Value)> {
        let assertion = self.params.get("assertion")?;
        let mut parts = assertion.split('.');
        let header = decode_json(parts.next()?)?;
        let claims = decode_json(parts.next()?)?;
        Some((header, claims))
    }
}

/// A running endpoint; stopped when dropped.
pub struct OAuthServer {
    /// `http://127.0.0.1:PORT/token`, for a credentials file's `token_uri`.
    pub token_uri: String,
    /// The access token issued to every granted request.
    pub access_token: String,
    state: Arc<State>,
    /// Declared before `dir`, so the thread stops before the keys are removed.
    server: http::Server,
    /// Holds generated keys; removed on drop (after the thread has stopped).
    dir: tempfile::TempDir,
}

/// What the serving thread needs.
struct State {
    token_uri: String,
    access_token: String,
    openssl: PathBuf,
    /// `kid` → public key PEM file of the service account keys this endpoint trusts.
    public_keys: Mutex<HashMap<String, PathBuf>>,
    /// `(client_id, client_secret, refresh_token)` of authorized users.
    users: Mutex<Vec<(String, String, String)>>,
    history: Mutex<Vec<OAuthRequest>>,
    /// For signature and body temp files.
    dir: PathBuf,
}

impl OAuthServer {
    /// Starts an endpoint on a free loopback port that issues `access_token`.
    pub fn start(access_token: &str) -> OAuthServer {
        let openssl = require("openssl", "apt-get install -y openssl");
        let dir = tempfile::tempdir().expect("temp dir for the OAuth server");
        // Port 0: the OS picks a free port and we keep the socket, so nothing can take it.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the OAuth server");
        let addr = listener.local_addr().expect("OAuth server address");
        let token_uri = format!("http://{addr}/token");
        let state = Arc::new(State {
            token_uri: token_uri.clone(),
            access_token: access_token.to_string(),
            openssl,
            public_keys: Mutex::new(HashMap::new()),
            users: Mutex::new(Vec::new()),
            history: Mutex::new(Vec::new()),
            dir: dir.path().to_path_buf(),
        });
        let server = {
            let state = Arc::clone(&state);
            http::Server::start(listener, "oauth-server", "OAuth server", move |stream| handle(stream, &state))
        };
        OAuthServer { token_uri, access_token: access_token.to_string(), state, server, dir }
    }

    /// A service account key file's JSON (fresh RSA key, PKCS#8 like Google's) whose
    /// `token_uri` is this endpoint, which trusts the key.
    pub fn service_account_key(&self, client_email: &str) -> Value {
        let (key, kid) = self.generate_key(true);
        service_account_json(client_email, &kid, &key, &self.token_uri)
    }

    /// Like [`service_account_key`](Self::service_account_key), but this endpoint does not
    /// know the key (as if it had been deleted), so its assertions are refused.
    pub fn unknown_service_account_key(&self, client_email: &str) -> Value {
        let (key, kid) = self.generate_key(false);
        service_account_json(client_email, &kid, &key, &self.token_uri)
    }

    /// An `authorized_user` file's JSON (what `gcloud auth application-default login`
    /// writes) for a user this endpoint knows, with `token_uri` pointing here.
    pub fn authorized_user(&self, refresh_token: &str) -> Value {
        let (client_id, client_secret) = ("ocync-test.apps.googleusercontent.com", "ocync-test-client-secret");
        self.state.users.lock().expect("users lock").push((
            client_id.to_string(),
            client_secret.to_string(),
            refresh_token.to_string(),
        ));
        json!({
            "type": "authorized_user",
            "client_id": client_id,
            "client_secret": client_secret,
            "refresh_token": refresh_token,
            "token_uri": self.token_uri,
        })
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<OAuthRequest> {
        self.state.history.lock().expect("history lock").clone()
    }

    /// A fresh RSA key (PKCS#8 PEM) and its id; `trusted` registers its public key.
    fn generate_key(&self, trusted: bool) -> (String, String) {
        let kid = format!("{:040x}", rand::random::<u128>());
        let key = self.dir.path().join(format!("{kid}.key"));
        let public = self.dir.path().join(format!("{kid}.pub"));
        run_openssl(
            &self.state.openssl,
            Command::new(&self.state.openssl)
                .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
                .arg(&key),
        );
        run_openssl(
            &self.state.openssl,
            Command::new(&self.state.openssl).args(["pkey", "-pubout", "-in"]).arg(&key).arg("-out").arg(&public),
        );
        if trusted {
            self.state.public_keys.lock().expect("keys lock").insert(kid.clone(), public);
        }
        (std::fs::read_to_string(&key).expect("read the generated key"), kid)
    }
}

fn service_account_json(client_email: &str, kid: &str, private_key: &str, token_uri: &str) -> Value {
    json!({
        "type": "service_account",
        "project_id": "ocync-test",
        "private_key_id": kid,
        "private_key": private_key,
        "client_email": client_email,
        "client_id": "100000000000000000001",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "universe_domain": "googleapis.com",
    })
}

fn run_openssl(openssl: &Path, command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", openssl.display()));
    assert!(output.status.success(), "openssl failed: {}", String::from_utf8_lossy(&output.stderr));
}

fn handle(mut stream: TcpStream, state: &State) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let Some(request) = http::read_request(&mut BufReader::new(stream.try_clone()?))? else {
        return Ok(()); // a bare connect, such as the one that stops the server
    };
    let content_type = request.header("content-type").unwrap_or("").to_ascii_lowercase();
    let (method, path) = (request.method, request.path);
    let params = parse_params(&content_type, &request.body);
    let outcome = if method != "POST" || path != "/token" {
        Err(("invalid_request", "only POST /token is served here".to_string()))
    } else {
        grant(state, &params)
    };
    let (status, response) = match &outcome {
        Ok(()) => (
            "200 OK",
            json!({
                "access_token": state.access_token,
                "expires_in": ACCESS_TOKEN_LIFETIME_SECS,
                "token_type": "Bearer",
            }),
        ),
        Err((error, description)) => ("400 Bad Request", json!({ "error": error, "error_description": description })),
    };
    let entry = OAuthRequest {
        method,
        path,
        params,
        granted: outcome.is_ok(),
        error: outcome.err().map(|(error, _)| error.to_string()),
    };
    state.history.lock().expect("history lock").push(entry);
    write_response(&mut stream, status, &response)
}

/// Form fields, or the string members of a JSON object (google-cloud-auth posts refresh
/// requests as JSON).
fn parse_params(content_type: &str, body: &[u8]) -> BTreeMap<String, String> {
    if content_type.starts_with("application/json") {
        let Ok(Value::Object(members)) = serde_json::from_slice::<Value>(body) else { return BTreeMap::new() };
        members.into_iter().filter_map(|(name, value)| Some((name, value.as_str()?.to_string()))).collect()
    } else {
        url::form_urlencoded::parse(body).map(|(name, value)| (name.into_owned(), value.into_owned())).collect()
    }
}

/// Decides a token request: `Ok` grants it, `Err((error, description))` refuses it.
fn grant(state: &State, params: &BTreeMap<String, String>) -> Result<(), (&'static str, String)> {
    match params.get("grant_type").map(String::as_str) {
        Some(JWT_BEARER) => {
            let assertion = params.get("assertion").ok_or(("invalid_request", "no assertion".to_string()))?;
            check_assertion(state, assertion).map_err(|detail| ("invalid_grant", detail))
        }
        Some("refresh_token") => {
            let field = |name: &str| params.get(name).cloned().unwrap_or_default();
            let presented = (field("client_id"), field("client_secret"), field("refresh_token"));
            if state.users.lock().expect("users lock").contains(&presented) {
                Ok(())
            } else {
                Err(("invalid_grant", "Token has been expired or revoked.".to_string()))
            }
        }
        other => Err(("unsupported_grant_type", format!("Invalid grant_type: {}", other.unwrap_or("")))),
    }
}

/// What Google checks of an assertion: a known key's RS256 signature, the audience, a
/// lifetime of at most an hour around now, an issuer and a scope.
fn check_assertion(state: &State, assertion: &str) -> Result<(), String> {
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else { return Err("Invalid JWT: not three parts".into()) };
    let header_json = decode_json(header).ok_or("Invalid JWT header")?;
    let claims_json = decode_json(claims).ok_or("Invalid JWT claims")?;
    if header_json["alg"] != "RS256" {
        return Err("Invalid JWT: alg must be RS256".into());
    }
    let kid = header_json["kid"].as_str().ok_or("Invalid JWT: no kid")?;
    let public_key = state.public_keys.lock().expect("keys lock").get(kid).cloned().ok_or("Invalid JWT Signature.")?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| "Invalid JWT: signature is not base64url")?;
    if !openssl_verify(state, &public_key, format!("{header}.{claims}").as_bytes(), &signature)? {
        return Err("Invalid JWT Signature.".into());
    }
    if claims_json["aud"] != state.token_uri.as_str() {
        return Err(format!("Invalid JWT: aud must be {}", state.token_uri));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
    let (iat, exp) = (claims_json["iat"].as_u64().unwrap_or(0), claims_json["exp"].as_u64().unwrap_or(0));
    if iat > now + 60 || exp <= now || exp.saturating_sub(iat) > 3600 {
        return Err("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.".into());
    }
    if claims_json["iss"].as_str().is_none_or(str::is_empty) || claims_json["scope"].as_str().is_none_or(str::is_empty)
    {
        return Err("Invalid JWT: iss and scope are required".into());
    }
    Ok(())
}

/// `openssl dgst -sha256 -verify`: an RSASSA-PKCS1-v1_5 SHA-256 (RS256) signature check.
fn openssl_verify(state: &State, public_key: &Path, input: &[u8], signature: &[u8]) -> Result<bool, String> {
    let signature_file = state.dir.join(format!("{:032x}.sig", rand::random::<u128>()));
    std::fs::write(&signature_file, signature).map_err(|e| format!("cannot write the signature: {e}"))?;
    let output = pipe_openssl(
        Command::new(&state.openssl)
            .args(["dgst", "-sha256", "-verify"])
            .arg(public_key)
            .arg("-signature")
            .arg(&signature_file),
        input,
    )?;
    let _ = std::fs::remove_file(&signature_file);
    Ok(output.status.success())
}

fn decode_json(part: &str) -> Option<Value> {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
}

fn write_response(stream: &mut TcpStream, status: &str, body: &Value) -> std::io::Result<()> {
    let headers = [("Content-Type", "application/json; charset=utf-8"), ("Cache-Control", "no-store")];
    http::write_response(stream, status, &headers, body.to_string().as_bytes())
}
