//! Credentials from docker's `config.json`: `auths`, `credHelpers` and `credsStore`.
//!
//! The file is `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. A credential helper
//! is the program `docker-credential-<name>`, run as `get` with the server URL on stdin.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{Credentials, Secret};
use crate::oci::{DOCKER_HUB, is_docker_hub};

/// The key Docker uses for Docker Hub in `config.json` and with credential helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Why docker's credentials could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file exists but cannot be read or parsed.
    #[error("cannot read docker config {path}: {reason}")]
    File {
        /// The config file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The credential helper could not run or answered nonsense.
    #[error("credential helper docker-credential-{helper} failed for {host}: {reason}")]
    Helper {
        /// Helper name.
        helper: String,
        /// Registry host asked for.
        host: String,
        /// What went wrong (never the secret).
        reason: String,
    },
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct DockerConfig {
    #[serde(default)]
    auths: HashMap<String, AuthEntry>,
    #[serde(default)]
    cred_helpers: HashMap<String, String>,
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    registrytoken: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HelperAnswer {
    username: String,
    secret: String,
}

/// The docker config file this process would use.
pub fn config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) => Some(Path::new(&dir).join("config.json")),
        None => std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker/config.json")),
    }
}

/// Credentials for `host` (as written in a reference, e.g. `docker.io`, `ghcr.io`,
/// `127.0.0.1:5000`), or `None` when docker has none for it.
pub async fn lookup(host: &str) -> Result<Option<Credentials>, Error> {
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let text = match tokio::fs::read_to_string(&path).await {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(Error::File { path, reason: e.to_string() });
        }
    };
    let config: DockerConfig =
        serde_json::from_str(&text).map_err(|e| Error::File { path: path.clone(), reason: e.to_string() })?;

    let server = if is_docker_hub(host) { DOCKER_HUB_KEY } else { host };
    let helper = config.cred_helpers.iter().find(|(key, _)| normalise(key) == normalise(server)).map(|(_, h)| h);
    if let Some(helper) = helper.or(config.creds_store.as_ref())
        && let Some(credentials) = run_helper(helper, server).await?
    {
        return Ok(Some(credentials));
    }
    let entry = config.auths.iter().find(|(key, _)| normalise(key) == normalise(server));
    entry.map(|(_, entry)| decode_entry(entry, host)).transpose()
}

/// `https://ghcr.io/v2/` → `ghcr.io`; Docker Hub spellings all become one key.
fn normalise(key: &str) -> String {
    let without_scheme = key.split_once("://").map_or(key, |(_, rest)| rest);
    let host = without_scheme.split('/').next().unwrap_or(without_scheme);
    if is_docker_hub(host) { DOCKER_HUB.to_string() } else { host.to_string() }
}

fn decode_entry(entry: &AuthEntry, host: &str) -> Result<Credentials, Error> {
    if let Some(token) = &entry.registrytoken {
        return Ok(Credentials::Bearer(Secret::new(token.clone())));
    }
    if let (Some(username), Some(password)) = (&entry.username, &entry.password) {
        return Ok(Credentials::Basic { username: username.clone(), password: Secret::new(password.clone()) });
    }
    let invalid = |reason: &str| Error::File {
        path: config_path().unwrap_or_default(),
        reason: format!("auths entry for {host}: {reason}"),
    };
    let encoded = entry.auth.as_deref().ok_or_else(|| invalid("has neither auth nor username/password"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| invalid("auth is not valid base64"))?;
    let decoded = String::from_utf8(decoded).map_err(|_| invalid("auth is not UTF-8"))?;
    let (username, password) = decoded.split_once(':').ok_or_else(|| invalid("auth is not user:password"))?;
    Ok(Credentials::Basic { username: username.to_string(), password: Secret::new(password) })
}

/// Runs `docker-credential-<helper> get`; "not found" answers are `None`, not errors.
async fn run_helper(helper: &str, server: &str) -> Result<Option<Credentials>, Error> {
    let fail = |reason: String| Error::Helper { helper: helper.to_string(), host: server.to_string(), reason };
    let mut child = tokio::process::Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot start it: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(server.as_bytes()).await.map_err(|e| fail(e.to_string()))?;
    }
    let output = child.wait_with_output().await.map_err(|e| fail(e.to_string()))?;
    if !output.status.success() {
        let message = String::from_utf8_lossy(&output.stdout).to_string() + &String::from_utf8_lossy(&output.stderr);
        if message.to_ascii_lowercase().contains("not found") {
            return Ok(None);
        }
        return Err(fail(format!("exited with {}: {}", output.status, message.trim())));
    }
    let answer: HelperAnswer =
        serde_json::from_slice(&output.stdout).map_err(|e| fail(format!("unreadable answer: {e}")))?;
    Ok(Some(Credentials::Basic { username: answer.username, password: Secret::new(answer.secret) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_the_spellings_of_a_registry_key() {
        assert_eq!(normalise("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(normalise("registry-1.docker.io"), "docker.io");
        assert_eq!(normalise("https://ghcr.io/v2/"), "ghcr.io");
        assert_eq!(normalise("127.0.0.1:5000"), "127.0.0.1:5000");
    }

    #[test]
    fn decodes_base64_auth_entries() {
        let entry = AuthEntry { auth: Some("Ym90OnMzY3IzdA==".into()), ..Default::default() };
        let credentials = decode_entry(&entry, "ghcr.io").unwrap();
        assert_eq!(credentials, Credentials::Basic { username: "bot".into(), password: Secret::new("s3cr3t") });
    }

    #[test]
    fn broken_auth_entry_names_the_host_but_not_the_value() {
        let entry = AuthEntry { auth: Some("!!!notbase64".into()), ..Default::default() };
        let error = decode_entry(&entry, "ghcr.io").unwrap_err().to_string();
        assert!(error.contains("ghcr.io") && !error.contains("!!!notbase64"), "{error}");
    }
}
