//! A small token server for distribution's token authentication, so tests can run a registry
//! that answers `401 Bearer realm=…,service=…` like Docker Hub, GHCR or Harbor do.
//!
//! `GET /token?service=…&scope=…&scope=…` with optional Basic credentials answers
//! `{"token", "access_token", "expires_in", "issued_at"}`. Wrong credentials get 401; no
//! credentials get a pull-only token when anonymous pull is allowed, else 401; a known user
//! gets every action asked for. Tokens live [`TOKEN_LIFETIME_SECS`] unless a test shortens
//! them ([`TokenServer::set_token_lifetime`]); a test can also revoke issued tokens
//! ([`Revocations`]) and have a proxy rule refuse them as the registry would.
//!
//! Tokens are RS256 JWTs signed with `openssl dgst -sha256 -sign` (an RSA PKCS#1 v1.5
//! signature over SHA-256 is exactly RS256), so no JOSE crate is needed. The header carries
//! the signing certificate in `x5c`: distribution 2.8 finds the verification key through the
//! header (`x5c`, `jwk` or `kid`) and, for `x5c`, checks the chain against `rootcertbundle`.
//! Our certificate is self-signed and *is* that bundle, so the chain is one certificate long.
//!
//! The server runs on a plain OS thread with a blocking listener, not a tokio task: tests run
//! blocking `std::process::Command`s (the CLI, skopeo) from inside their runtime, which would
//! starve a task on a current-thread runtime and deadlock the token fetch it is waiting for.

use std::collections::{HashMap, HashSet};
use std::io::BufReader;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;

use super::http;
use super::registry::RegistryAuth;
use super::tls::pipe_openssl;
use super::tools::require;

/// The longest `exp - iat` of an issued token, whatever `expires_in` announces: ten years.
const EXP_CAP_SECS: u64 = 10 * 365 * 24 * 3600;

/// How long issued tokens live (`expires_in`) unless a test sets another lifetime.
pub const TOKEN_LIFETIME_SECS: u64 = 300;

/// Tokens a test has revoked. The registry cannot ask the token server, so whatever plays the
/// registry's enforcement (a [`super::proxy::FaultProxy`] rule) consults this and answers 401,
/// as a registry does for a revoked or expired token.
#[derive(Clone, Default)]
pub struct Revocations(Arc<Mutex<HashSet<String>>>);

impl Revocations {
    /// Revokes `token` (the JWT itself, without `Bearer `).
    pub fn revoke(&self, token: &str) {
        self.0.lock().expect("revocations lock").insert(token.to_string());
    }

    /// Whether `token` was revoked.
    pub fn is_revoked(&self, token: &str) -> bool {
        self.0.lock().expect("revocations lock").contains(token)
    }
}

/// The signing certificate's extensions: a self-signed root that signs tokens itself.
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = ocync test token issuer

[signer_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, keyCertSign
subjectKeyIdentifier = hash
";

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The Basic user name presented, `None` for an anonymous request.
    pub user: Option<String>,
    /// The `scope` parameters, in order (`repository:team/app:pull,push`).
    pub scopes: Vec<String>,
    /// Whether a token was issued (false: answered 401).
    pub granted: bool,
}

/// A running token server; stopped when dropped.
pub struct TokenServer {
    /// `http://127.0.0.1:PORT/token`, the `realm` the registry announces.
    pub realm: String,
    /// The `service` (token audience) the registry announces and checks.
    pub service: String,
    /// The `iss` claim the registry trusts.
    pub issuer: String,
    /// The PEM certificate that signs tokens, for the registry's `rootcertbundle`.
    pub root_cert_bundle: PathBuf,
    history: Arc<Mutex<Vec<TokenRequest>>>,
    lifetime_secs: Arc<AtomicU64>,
    revocations: Revocations,
    /// Declared before `dir`, so the thread stops before the key is removed.
    server: http::Server,
    /// Holds the key and certificate; removed on drop (after the thread has stopped).
    dir: tempfile::TempDir,
}

/// What the serving thread needs.
struct Issuer {
    users: HashMap<String, String>,
    anonymous_pull: bool,
    service: String,
    issuer: String,
    openssl: PathBuf,
    key: PathBuf,
    /// Base64 (standard, padded) DER of the signing certificate: the one `x5c` entry.
    x5c: String,
    history: Arc<Mutex<Vec<TokenRequest>>>,
    /// `expires_in` and `exp - iat` of tokens issued from now on.
    lifetime_secs: Arc<AtomicU64>,
}

impl TokenServer {
    /// Starts a token server on a free loopback port for `users` (`(name, password)`);
    /// `anonymous_pull` lets requests without credentials get pull-only tokens.
    pub fn start(users: &[(&str, &str)], anonymous_pull: bool) -> TokenServer {
        let openssl = require("openssl", "apt-get install -y openssl");
        let dir = tempfile::tempdir().expect("temp dir for the token server");
        let config = dir.path().join("openssl.cnf");
        std::fs::write(&config, OPENSSL_CONFIG).expect("write openssl config");
        let key = dir.path().join("token.key");
        let cert = dir.path().join("token.pem");
        let output = Command::new(&openssl)
            .args(["req", "-x509", "-new", "-nodes", "-sha256", "-days", "7", "-newkey", "rsa:2048"])
            .args(["-extensions", "signer_ext", "-config"])
            .arg(&config)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("run openssl req");
        assert!(
            output.status.success(),
            "openssl req (token signing certificate) failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let x5c = pem_body(&cert);

        // Port 0: the OS picks a free port and we keep the socket, so nothing can take it.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token server");
        let addr = listener.local_addr().expect("token server address");
        let history = Arc::new(Mutex::new(Vec::new()));
        let lifetime_secs = Arc::new(AtomicU64::new(TOKEN_LIFETIME_SECS));
        let state = Issuer {
            users: users.iter().map(|(u, p)| (u.to_string(), p.to_string())).collect(),
            anonymous_pull,
            service: "ocync-test-registry".to_string(),
            issuer: "ocync-test-token-issuer".to_string(),
            openssl,
            key,
            x5c,
            history: Arc::clone(&history),
            lifetime_secs: Arc::clone(&lifetime_secs),
        };
        let (realm, service, issuer) = (format!("http://{addr}/token"), state.service.clone(), state.issuer.clone());
        let server =
            http::Server::start(listener, "token-server", "token server", move |stream| handle(stream, &state));
        TokenServer {
            realm,
            service,
            issuer,
            root_cert_bundle: cert,
            history,
            lifetime_secs,
            revocations: Revocations::default(),
            server,
            dir,
        }
    }

    /// Tokens issued from now on live `secs` seconds (`expires_in` and `exp`). distribution
    /// accepts a token up to 60 s past `exp`, so this tests a client's own refresh, not the
    /// registry's refusal (for that, see [`TokenServer::revocations`]).
    pub fn set_token_lifetime(&self, secs: u64) {
        self.lifetime_secs.store(secs, Ordering::SeqCst);
    }

    /// The tokens revoked so far, shared with whoever enforces them.
    pub fn revocations(&self) -> Revocations {
        self.revocations.clone()
    }

    /// The `WWW-Authenticate` challenge the registry sends for `scope`, for a rule answering
    /// 401 in its place.
    pub fn challenge(&self, scope: &str) -> String {
        format!("Bearer realm=\"{}\",service=\"{}\",scope=\"{scope}\"", self.realm, self.service)
    }

    /// The registry configuration that trusts this server.
    pub fn registry_auth(&self) -> RegistryAuth {
        RegistryAuth::Token {
            realm: self.realm.clone(),
            service: self.service.clone(),
            issuer: self.issuer.clone(),
            root_cert_bundle: self.root_cert_bundle.clone(),
        }
    }

    /// Token requests answered so far, granted or refused.
    pub fn requests(&self) -> usize {
        self.history.lock().expect("token history lock").len()
    }

    /// Every token request answered so far, in order.
    pub fn history(&self) -> Vec<TokenRequest> {
        self.history.lock().expect("token history lock").clone()
    }

    /// The temp dir holding the signing key and certificate.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// A response: status line, extra headers, JSON body.
struct Response {
    status: &'static str,
    headers: Vec<(&'static str, String)>,
    body: serde_json::Value,
}

impl Response {
    fn json(status: &'static str, body: serde_json::Value) -> Self {
        Response { status, headers: Vec::new(), body }
    }

    fn unauthorized(detail: &str) -> Self {
        Response {
            status: "401 Unauthorized",
            headers: vec![("WWW-Authenticate", "Basic realm=\"ocync-test-token\"".into())],
            body: json!({ "details": detail }),
        }
    }
}

fn handle(mut stream: TcpStream, state: &Issuer) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let Some(request) = http::read_request(&mut BufReader::new(stream.try_clone()?))? else {
        return Ok(()); // a bare connect, such as the one that stops the server
    };
    // Only Authorization matters.
    let (method, path, query) = (request.method.as_str(), request.path.as_str(), request.query.as_str());
    let authorization = request.header("authorization");
    let response = if method != "GET" || path != "/token" {
        Response::json("404 Not Found", json!({ "details": "only GET /token is served here" }))
    } else {
        token_response(state, authorization, query)
    };
    write_response(&mut stream, &response)
}

/// Answers one `GET /token?…` and records it.
fn token_response(state: &Issuer, authorization: Option<&str>, query: &str) -> Response {
    // `form_urlencoded` decodes `%3A`, `%2F` and `+`; a scope may also hold several
    // space-separated scopes, which some clients send instead of repeating the parameter.
    let scopes: Vec<String> = url::form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == "scope")
        .flat_map(|(_, value)| value.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect();
    let user = match authorization {
        None => None,
        Some(header) => match basic_credentials(header) {
            Some((name, password)) if state.users.get(&name) == Some(&password) => Some(name),
            _ => {
                record(state, authorization_user(header), &scopes, false);
                return Response::unauthorized("invalid username or password");
            }
        },
    };
    if user.is_none() && !state.anonymous_pull {
        record(state, None, &scopes, false);
        return Response::unauthorized("authentication required");
    }
    let access: Vec<serde_json::Value> = scopes
        .iter()
        .filter_map(|scope| parse_scope(scope))
        .map(|(kind, name, actions)| {
            // Anonymous callers only ever get `pull`; users get what they asked for.
            let actions: Vec<&str> = actions.into_iter().filter(|a| user.is_some() || *a == "pull").collect();
            json!({ "type": kind, "name": name, "actions": actions })
        })
        .collect();
    let token = match sign_token(state, user.as_deref().unwrap_or(""), access) {
        Ok(token) => token,
        Err(error) => {
            return Response::json("500 Internal Server Error", json!({ "details": error }));
        }
    };
    record(state, user, &scopes, true);
    let now = unix_now();
    Response::json(
        "200 OK",
        json!({
            "token": token,
            "access_token": token,
            "expires_in": state.lifetime_secs.load(Ordering::SeqCst),
            "issued_at": rfc3339(now),
        }),
    )
}

fn record(state: &Issuer, user: Option<String>, scopes: &[String], granted: bool) {
    let entry = TokenRequest { user, scopes: scopes.to_vec(), granted };
    state.history.lock().expect("token history lock").push(entry);
}

/// `(user, password)` from `Basic base64(user:password)`.
fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

/// The user name of a refused request, for the history (none if unreadable).
fn authorization_user(header: &str) -> Option<String> {
    basic_credentials(header).map(|(user, _)| user)
}

/// `type:name:action,action` → parts; the name may not contain `:` but the type and actions
/// are split at the first and last colon so `repository:team/app:pull,push` parses.
fn parse_scope(scope: &str) -> Option<(&str, &str, Vec<&str>)> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some((kind, name, actions.split(',').filter(|a| !a.is_empty()).collect()))
}

/// `base64url(header).base64url(claims).base64url(RS256 signature)`.
fn sign_token(state: &Issuer, subject: &str, access: Vec<serde_json::Value>) -> Result<String, String> {
    let now = unix_now();
    // distribution 2.8 reads `aud` as a single string (a JSON array fails to parse), and
    // finds the key through `x5c`, verified against its rootcertbundle.
    let header = json!({ "typ": "JWT", "alg": "RS256", "x5c": [state.x5c] });
    let claims = json!({
        "iss": state.issuer,
        "sub": subject,
        "aud": state.service,
        // At most ten years, so a test can announce an endless `expires_in` and still be
        // issued a token distribution accepts (it refuses an `exp` near the int64 limit).
        "exp": now + state.lifetime_secs.load(Ordering::SeqCst).min(EXP_CAP_SECS),
        "nbf": now,
        "iat": now,
        "jti": format!("{:032x}", rand::random::<u128>()),
        "access": access,
    });
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
    let signature = openssl_sign(&state.openssl, &state.key, signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature)))
}

/// `openssl dgst -sha256 -sign key`: RSASSA-PKCS1-v1_5 with SHA-256, i.e. RS256.
fn openssl_sign(openssl: &Path, key: &Path, input: &[u8]) -> Result<Vec<u8>, String> {
    let output = pipe_openssl(Command::new(openssl).args(["dgst", "-sha256", "-sign"]).arg(key), input)?;
    if !output.status.success() {
        return Err(format!("openssl dgst -sign failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    Ok(output.stdout)
}

fn write_response(stream: &mut TcpStream, response: &Response) -> std::io::Result<()> {
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend(response.headers.iter().map(|(name, value)| (*name, value.as_str())));
    http::write_response(stream, response.status, &headers, response.body.to_string().as_bytes())
}

/// The base64 body of the first PEM block in `path`: exactly the standard-base64 DER that
/// `x5c` wants, without another openssl run.
fn pem_body(path: &Path) -> String {
    let pem = std::fs::read_to_string(path).expect("read the token signing certificate");
    pem.lines()
        .skip_while(|line| !line.starts_with("-----BEGIN CERTIFICATE-----"))
        .skip(1)
        .take_while(|line| !line.starts_with("-----END"))
        .map(str::trim)
        .collect()
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (UTC), without a date crate.
fn rfc3339(unix: u64) -> String {
    let (days, seconds) = (unix / 86_400, unix % 86_400);
    // Howard Hinnant's civil_from_days, for days since 1970-01-01 (never negative here).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", seconds / 3600, seconds % 3600 / 60, seconds % 60)
}
