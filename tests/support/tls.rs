//! A throwaway certificate authority and a server certificate it signed, made with the
//! `openssl` CLI, for registries served over HTTPS on loopback.
//!
//! Our client verifies with rustls and webpki, which is stricter than most: the leaf must be
//! an X.509 v3 end-entity certificate (not self-signed, not `CA:TRUE`) that names the address
//! we dial in its subjectAltName and allows `serverAuth`, and it must chain to a `CA:TRUE`
//! issuer we trust. So the CA and the leaf are separate, with every extension spelled out in
//! our own config file rather than taken from the system's `openssl.cnf`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::tools::require;

/// Every extension set used below, so nothing depends on the system's `openssl.cnf`.
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
CN = ocync test

[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// A CA and a server certificate for `127.0.0.1` / `localhost`, in a temp dir that lives as
/// long as this value.
pub struct TestCa {
    /// Holds every file below; removed on drop.
    pub dir: tempfile::TempDir,
    /// The CA certificate (PEM): what a client must trust.
    pub ca_cert: PathBuf,
    /// The server certificate (PEM), signed by the CA.
    pub server_cert: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub server_key: PathBuf,
}

impl TestCa {
    /// The `(certificate, key)` pair as `RegistryOptions::tls` takes it.
    pub fn server_pair(&self) -> (PathBuf, PathBuf) {
        (self.server_cert.clone(), self.server_key.clone())
    }
}

/// Creates a fresh CA and a server certificate it signed (P-256 keys, SHA-256, valid 7 days).
pub fn generate() -> TestCa {
    let dir = tempfile::tempdir().expect("temp dir for certificates");
    let path = |name: &str| dir.path().join(name);
    let config = path("openssl.cnf");
    std::fs::write(&config, OPENSSL_CONFIG).expect("write openssl config");
    let (ca_cert, ca_key) = (path("ca.pem"), path("ca.key"));
    let (server_csr, server_cert, server_key) = (path("server.csr"), path("server.pem"), path("server.key"));

    // The CA: self-signed, `CA:TRUE`.
    openssl(
        &[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-sha256",
            "-days",
            "7",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-subj",
            "/CN=ocync test CA",
            "-extensions",
            "ca_ext",
        ],
        &[("-config", &config), ("-keyout", &ca_key), ("-out", &ca_cert)],
    );
    // The server: a key and a signing request...
    openssl(
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-subj",
            "/CN=localhost",
        ],
        &[("-config", &config), ("-keyout", &server_key), ("-out", &server_csr)],
    );
    // ...which the CA signs with `server_ext`. A random serial, so no two test CAs ever issue
    // the same (issuer name, serial) pair.
    let serial = format!("0x{:016x}", rand::random::<u64>() >> 1);
    openssl(
        &["x509", "-req", "-sha256", "-days", "7", "-set_serial", &serial, "-extensions", "server_ext"],
        &[("-extfile", &config), ("-in", &server_csr), ("-CA", &ca_cert), ("-CAkey", &ca_key), ("-out", &server_cert)],
    );

    TestCa { dir, ca_cert, server_cert, server_key }
}

/// Runs `openssl <args> <flag path>...` and fails the test, quoting openssl, on error.
fn openssl(args: &[&str], files: &[(&str, &Path)]) {
    let mut command = Command::new(require("openssl", "apt-get install -y openssl"));
    command.args(args);
    for (flag, file) in files {
        command.arg(flag).arg(file);
    }
    let output = command.output().expect("run openssl");
    assert!(output.status.success(), "openssl {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr));
}

/// Runs an `openssl` `command` with `input` on its stdin and returns what it wrote, whatever
/// its exit status; an `Err` only when it could not be run or fed.
pub fn pipe_openssl(command: &mut Command, input: &[u8]) -> Result<Output, String> {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    // Inputs are a few hundred bytes, well under a pipe buffer, so writing them all before
    // reading the output cannot deadlock.
    let mut stdin = child.stdin.take().ok_or("openssl has no stdin")?;
    stdin.write_all(input).map_err(|e| format!("cannot feed openssl: {e}"))?;
    drop(stdin);
    child.wait_with_output().map_err(|e| format!("openssl failed: {e}"))
}
