//! A local Sigstore for keyless `verify` tests: a Fulcio-like CA made with the `openssl` CLI,
//! certificates it issues for keys generated in process, a Rekor-like log key that signs
//! entry timestamps, and the `trusted_root.json` naming both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use serde_json::json;

use super::keys::{KeyPair, SigningKind};
use super::testdata::{self, Image};
use crate::oci::{Digest, Manifest};

const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The request settings and the CA's extensions.
const OPENSSL_CONFIG: &str = "\
[req]
distinguished_name = dn
prompt = no

[dn]
O = sigstore.test

[ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign
subjectKeyIdentifier = hash
";

/// A leaf's extensions (Fulcio's shape: code signing, the identity in a critical
/// subjectAltName, the OIDC issuer in Fulcio's v2 extension); `{subject}` and `{issuer}` are
/// filled in.
const LEAF_EXTENSIONS: &str = "\
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = codeSigning
subjectAltName = critical, URI:{subject}
1.3.6.1.4.1.57264.1.8 = ASN1:UTF8String:{issuer}
authorityKeyIdentifier = keyid
";

/// A CA, a log key and their trusted root, in a temp directory removed on drop.
pub struct TestSigstore {
    dir: PathBuf,
    log: KeyPair,
    /// The CA certificate, DER.
    pub ca_der: Vec<u8>,
}

/// A Rekor entry for a signature, as cosign's `bundle` annotation and Sigstore bundles carry it.
pub struct Entry {
    /// The entry body, base64.
    pub body: String,
    /// Integrated time (Unix seconds).
    pub integrated_time: i64,
    /// The log ID, hex.
    pub log_id: String,
    /// The signed entry timestamp, base64.
    pub set: String,
}

impl TestSigstore {
    /// A fresh CA (ECDSA P-256, self-signed, valid 10 days) and log key.
    pub fn new() -> TestSigstore {
        let unique = format!("ocync-sigstore-{}-{}", std::process::id(), now_nanos());
        let dir = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&dir).expect("temp dir");
        std::fs::write(dir.join("openssl.cnf"), OPENSSL_CONFIG).expect("write openssl config");
        let ca = KeyPair::generate(SigningKind::P256);
        std::fs::write(dir.join("ca.key"), ca.private_pem()).expect("write CA key");
        let mut sigstore = TestSigstore { dir, log: KeyPair::generate(SigningKind::P256), ca_der: Vec::new() };
        sigstore.openssl(&[
            "req",
            "-new",
            "-x509",
            "-days",
            "10",
            "-key",
            "ca.key",
            "-config",
            "openssl.cnf",
            "-extensions",
            "ca",
            "-outform",
            "DER",
            "-out",
            "ca.der",
        ]);
        sigstore.ca_der = std::fs::read(sigstore.dir.join("ca.der")).expect("read CA");
        sigstore
    }

    /// `trusted_root.json` naming the CA and the log.
    pub fn trusted_root(&self) -> String {
        json!({
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [{
                "baseUrl": "https://rekor.sigstore.test",
                "hashAlgorithm": "SHA2_256",
                "publicKey": { "rawBytes": BASE64.encode(self.log.public_der()), "keyDetails": "PKIX_ECDSA_P256_SHA_256" },
                "logId": { "keyId": BASE64.encode(hex::decode(self.log_id()).expect("hex")) },
            }],
            "certificateAuthorities": [{
                "subject": { "organization": "sigstore.test", "commonName": "sigstore" },
                "uri": "https://fulcio.sigstore.test",
                "certChain": { "certificates": [{ "rawBytes": BASE64.encode(&self.ca_der) }] },
            }],
        })
        .to_string()
    }

    /// Writes the trusted root to `path`.
    pub fn write_trusted_root(&self, path: &Path) {
        std::fs::write(path, self.trusted_root()).expect("write trusted root");
    }

    /// A leaf certificate (PEM) for `key`, valid for a day from now, for `issuer` and the
    /// URI `subject`.
    pub fn issue(&self, key: &KeyPair, issuer: &str, subject: &str) -> String {
        std::fs::write(self.dir.join("leaf.key"), key.private_pem()).expect("write leaf key");
        self.openssl(&["req", "-new", "-key", "leaf.key", "-config", "openssl.cnf", "-out", "leaf.csr"]);
        let serial = format!("{}", now_nanos() % 1_000_000_000);
        let extensions = LEAF_EXTENSIONS.replace("{subject}", subject).replace("{issuer}", issuer);
        std::fs::write(self.dir.join("leaf.cnf"), extensions).expect("write leaf extensions");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.der",
            "-CAform",
            "DER",
            "-CAkey",
            "ca.key",
            "-days",
            "1",
            "-set_serial",
            &serial,
            "-extfile",
            "leaf.cnf",
            "-extensions",
            "leaf",
            "-out",
            "leaf.pem",
        ]);
        std::fs::read_to_string(self.dir.join("leaf.pem")).expect("read leaf")
    }

    /// The log's ID: hex SHA-256 of its DER key.
    pub fn log_id(&self) -> String {
        Digest::sha256_of(&self.log.public_der()).hex().to_string()
    }

    /// A `hashedrekord` entry for `signature` over `payload` by `certificate`, integrated at
    /// `integrated_time`, with the log's SET.
    pub fn hashedrekord(&self, payload: &[u8], signature: &[u8], certificate: &str, integrated_time: i64) -> Entry {
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "hashedrekord",
            "spec": {
                "data": { "hash": { "algorithm": "sha256", "value": Digest::sha256_of(payload).hex() } },
                "signature": { "content": BASE64.encode(signature), "publicKey": { "content": BASE64.encode(certificate) } },
            },
        });
        self.entry(body, integrated_time)
    }

    /// A `dsse` entry for an envelope with `payload` and `signature`.
    pub fn dsse(&self, payload: &[u8], signature: &[u8], certificate: &str, integrated_time: i64) -> Entry {
        let body = json!({
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "payloadHash": { "algorithm": "sha256", "value": Digest::sha256_of(payload).hex() },
                "signatures": [{ "signature": BASE64.encode(signature), "verifier": BASE64.encode(certificate) }],
            },
        });
        self.entry(body, integrated_time)
    }

    /// What `cosign sign` (keyless) pushes as `sha256-<hex>.sig`: a simple-signing payload
    /// naming `signed`, signed with a fresh key whose certificate names `issuer` and `subject`,
    /// logged at `integrated_time`.
    pub fn keyless_signature(&self, signed: &Digest, issuer: &str, subject: &str, integrated_time: i64) -> Image {
        let leaf = KeyPair::generate(SigningKind::P256);
        let certificate = self.issue(&leaf, issuer, subject);
        testdata::cosign_signature_with(
            signed,
            |m| leaf.sign(m),
            |payload, signature| {
                let entry = self.hashedrekord(payload, signature, &certificate, integrated_time);
                let bundle = json!({
                    "SignedEntryTimestamp": entry.set,
                    "Payload": { "body": entry.body, "integratedTime": entry.integrated_time, "logIndex": 7, "logID": entry.log_id },
                });
                json!({ "dev.sigstore.cosign/certificate": certificate, "dev.sigstore.cosign/bundle": bundle.to_string() })
            },
        )
    }

    /// What `cosign sign --new-bundle-format` (keyless) attaches to `subject`: a bundle with
    /// the certificate and a `dsse` Rekor entry with its inclusion promise.
    pub fn keyless_bundle(&self, subject: &Manifest, issuer: &str, identity: &str, integrated_time: i64) -> Image {
        let leaf = KeyPair::generate(SigningKind::P256);
        let certificate = self.issue(&leaf, issuer, identity);
        let (_, der) = x509_cert::der::pem::decode_vec(certificate.as_bytes()).expect("openssl writes PEM");
        testdata::bundle_with(
            subject,
            &subject.digest,
            |m| leaf.sign(m),
            |payload, signature| {
                let entry = self.dsse(payload, signature, &certificate, integrated_time);
                json!({
                    "certificate": { "rawBytes": BASE64.encode(&der) },
                    "tlogEntries": [{
                        "logIndex": "7",
                        "logId": { "keyId": BASE64.encode(hex::decode(&entry.log_id).expect("hex")) },
                        "kindVersion": { "kind": "dsse", "version": "0.0.1" },
                        "integratedTime": entry.integrated_time.to_string(),
                        "inclusionPromise": { "signedEntryTimestamp": entry.set },
                        "canonicalizedBody": entry.body,
                    }],
                })
            },
        )
    }

    fn entry(&self, body: serde_json::Value, integrated_time: i64) -> Entry {
        let body = BASE64.encode(body.to_string());
        let log_id = self.log_id();
        let canonical = format!(
            "{{\"body\":\"{body}\",\"integratedTime\":{integrated_time},\"logID\":\"{log_id}\",\"logIndex\":7}}"
        );
        let set = BASE64.encode(self.log.sign(canonical.as_bytes()));
        Entry { body, integrated_time, log_id, set }
    }

    fn command(&self, args: &[&str]) -> Command {
        let openssl = ["/usr/bin/openssl", "/usr/local/bin/openssl"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .unwrap_or_else(|| panic!("openssl is not installed; install it with: apt-get install -y openssl"));
        let mut command = Command::new(openssl);
        command.args(args).current_dir(&self.dir);
        command
    }

    fn openssl(&self, args: &[&str]) {
        run(self.command(args));
    }
}

impl Default for TestSigstore {
    fn default() -> Self {
        TestSigstore::new()
    }
}

impl Drop for TestSigstore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Now, in Unix seconds.
pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

fn now_nanos() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos()
}

fn run(mut command: Command) {
    let output = command.output().expect("run openssl");
    assert!(output.status.success(), "openssl failed: {}", String::from_utf8_lossy(&output.stderr));
}
