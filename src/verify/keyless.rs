//! Keyless (Sigstore) signatures: a short-lived Fulcio certificate instead of a listed key.
//! One verifies when
//! - the Rekor entry's signed entry timestamp (SET) verifies with the key of a transparency
//!   log of the trusted root, and the entry records this signature over these bytes;
//! - the certificate chains to a Fulcio CA of the trusted root for code signing, at the
//!   entry's integrated time (so a certificate outside its validity then is refused);
//! - the signature verifies with the certificate's key;
//! - the certificate's OIDC issuer and subject match an identity of the policy.
//!
//! Path validation is rustls-webpki's; certificates are read with x509-cert.

use std::path::Path;

use rustls_pki_types::{CertificateDer, UnixTime};
use serde::Deserialize;
use x509_cert::Certificate;
use x509_cert::der::asn1::{ObjectIdentifier, Utf8StringRef};
use x509_cert::der::{Decode, Encode};
use x509_cert::ext::pkix::SubjectAltName;
use x509_cert::ext::pkix::name::GeneralName;

use super::{Candidate, Policy, PublicKey, base64_decode};
use crate::oci::Digest;

/// Extended key usage Fulcio certificates carry (id-kp-codeSigning).
static CODE_SIGNING: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.5.5.7.3.3");
/// Fulcio's OIDC issuer extension, v2 (a DER UTF8String).
const ISSUER_V2: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.8");
/// Fulcio's OIDC issuer extension, v1 (the raw string).
const ISSUER_V1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.6.1.4.1.57264.1.1");
/// subjectAltName.
const SUBJECT_ALT_NAME: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.5.29.17");

/// A Sigstore trusted root: the Fulcio CAs and Rekor keys keyless signatures are checked
/// against (`trusted_root.json`, media type `application/vnd.dev.sigstore.trustedroot+json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRoot {
    /// Each CA's chain, intermediates first, its root last (DER).
    authorities: Vec<Vec<Vec<u8>>>,
    /// Rekor logs: log ID (hex SHA-256 of the key) and key.
    logs: Vec<(String, PublicKey)>,
    /// `sha256:` of the file, to tell roots apart.
    digest: Digest,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawRoot {
    #[serde(default)]
    tlogs: Vec<RawLog>,
    #[serde(default)]
    certificate_authorities: Vec<RawAuthority>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLog {
    public_key: RawBytes,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawAuthority {
    cert_chain: RawChain,
}

#[derive(Deserialize)]
struct RawChain {
    certificates: Vec<RawBytes>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawBytes {
    raw_bytes: String,
}

/// Sigstore's public-good trusted root (Fulcio CAs and Rekor keys of sigstore.dev), as the
/// Sigstore TUF repository published it; copied from the `sigstore` Python package's bundled
/// copy (Apache-2.0). The default of a keyless policy that names no `trusted_root`. Keys rotate:
/// a root older than a signature's log or CA fails that signature, and `trusted_root:` in the
/// config overrides this copy.
const PUBLIC_GOOD_ROOT: &[u8] = include_bytes!("public_good_trusted_root.json");

impl TrustedRoot {
    /// The public-good root pinned in this binary ([`PUBLIC_GOOD_ROOT`]); a unit test parses
    /// it, so a bad copy fails the tests rather than a user's run.
    pub fn public_good() -> Result<TrustedRoot, String> {
        TrustedRoot::from_json(PUBLIC_GOOD_ROOT).map_err(|reason| format!("the pinned public-good root: {reason}"))
    }

    /// Reads a `trusted_root.json`; the error says what is wrong with it.
    pub fn load(path: &Path) -> Result<TrustedRoot, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        TrustedRoot::from_json(&bytes).map_err(|reason| format!("{}: {reason}", path.display()))
    }

    /// `sha256:` of the document, which tells roots apart.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Parses a trusted root document.
    pub fn from_json(bytes: &[u8]) -> Result<TrustedRoot, String> {
        let raw: RawRoot = serde_json::from_slice(bytes).map_err(|e| format!("not a Sigstore trusted root ({e})"))?;
        let mut logs = Vec::new();
        for (i, log) in raw.tlogs.iter().enumerate() {
            let der = base64_decode(&log.public_key.raw_bytes).map_err(|e| format!("tlogs[{i}] key {e}"))?;
            let key = PublicKey::from_spki_der(&der).map_err(|e| format!("tlogs[{i}]: {e}"))?;
            logs.push((Digest::sha256_of(&der).hex().to_string(), key));
        }
        let mut authorities = Vec::new();
        for (i, authority) in raw.certificate_authorities.iter().enumerate() {
            let chain = authority
                .cert_chain
                .certificates
                .iter()
                .map(|c| base64_decode(&c.raw_bytes))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("certificateAuthorities[{i}] certificate {e}"))?;
            if chain.is_empty() {
                return Err(format!("certificateAuthorities[{i}] has no certificate"));
            }
            if let Some(error) = chain.iter().find_map(|der| Certificate::from_der(der).err()) {
                return Err(format!("certificateAuthorities[{i}]: not a certificate ({error})"));
            }
            authorities.push(chain);
        }
        if logs.is_empty() || authorities.is_empty() {
            return Err("names no transparency log or no certificate authority".into());
        }
        Ok(TrustedRoot { authorities, logs, digest: Digest::sha256_of(bytes) })
    }
}

/// A Rekor entry as cosign and bundles carry it, with its signed entry timestamp.
pub(super) struct LogEntry {
    /// The entry body, base64, as the log stores it.
    pub body: String,
    /// When the log integrated it (Unix seconds).
    pub integrated_time: i64,
    /// Its position in the log.
    pub log_index: i64,
    /// The log's ID, hex.
    pub log_id: String,
    /// The log's signature over the entry.
    pub signed_entry_timestamp: Vec<u8>,
}

/// What a keyless signature comes with.
pub(super) struct Evidence<'a> {
    /// The Fulcio certificate (DER).
    pub certificate: Vec<u8>,
    /// Intermediates shipped alongside (DER), beside those of the trusted root.
    pub chain: Vec<Vec<u8>>,
    /// The bytes signed.
    pub message: &'a [u8],
    /// The bytes whose hash the log entry records (the payload).
    pub logged: &'a [u8],
    /// The signature.
    pub signature: &'a [u8],
    /// The transparency log entry.
    pub entry: Option<LogEntry>,
}

/// Checks a keyless signature against the policy's root and identities.
pub(super) fn verify(policy: &Policy, evidence: &Evidence<'_>) -> Candidate {
    if policy.identities.is_empty() {
        return Err("keyless signature, and verify lists no keyless identities".into());
    }
    let root = policy.trusted_root.as_deref().ok_or("keyless signature, and verify has no trusted_root")?;
    let entry = evidence.entry.as_ref().ok_or("no transparency log entry (Rekor bundle)")?;
    check_entry(root, entry, evidence)?;
    check_chain(root, evidence, entry.integrated_time)?;
    let certificate = Certificate::from_der(&evidence.certificate).map_err(|e| format!("certificate: {e}"))?;
    let key = PublicKey::from_spki(certificate.tbs_certificate().subject_public_key_info())
        .map_err(|e| format!("certificate key: {e}"))?;
    if !key.verifies(evidence.message, evidence.signature) {
        return Err("the signature does not verify with the certificate's key".into());
    }
    let (issuer, subject) = identity(&certificate)?;
    match policy.identities.iter().find(|identity| identity.issuer == issuer && identity.subject.matches(&subject)) {
        Some(_) => Ok(format!("keyless {issuer} {subject}")),
        None => Err(format!(
            "certificate identity {} {} matches no keyless identity",
            super::shown(&issuer),
            super::shown(&subject)
        )),
    }
}

/// The SET verifies with a log of the root, and the entry records this signature over these bytes.
fn check_entry(root: &TrustedRoot, entry: &LogEntry, evidence: &Evidence<'_>) -> Result<(), String> {
    let (_, key) = root
        .logs
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(&entry.log_id))
        .ok_or_else(|| format!("log entry from log {} not in the trusted root", super::shown(&entry.log_id)))?;
    // What Rekor signs: the entry's canonical JSON (keys sorted, no spaces).
    let body = serde_json::to_string(&entry.body).map_err(|e| e.to_string())?;
    let log_id = serde_json::to_string(&entry.log_id).map_err(|e| e.to_string())?;
    let canonical = format!(
        "{{\"body\":{body},\"integratedTime\":{},\"logID\":{log_id},\"logIndex\":{}}}",
        entry.integrated_time, entry.log_index
    );
    if !key.verifies(canonical.as_bytes(), &entry.signed_entry_timestamp) {
        return Err("the log entry's signed timestamp does not verify with the log's key".into());
    }
    let body: serde_json::Value = serde_json::from_slice(&base64_decode(&entry.body)?)
        .map_err(|e| format!("log entry body is not JSON ({e})"))?;
    let logged_hash = Digest::sha256_of(evidence.logged);
    let spec = &body["spec"];
    let (hash, signatures): (Option<&str>, Vec<&str>) = match body["kind"].as_str() {
        Some("hashedrekord") => {
            (spec["data"]["hash"]["value"].as_str(), spec["signature"]["content"].as_str().into_iter().collect())
        }
        Some("dsse") => (
            spec["payloadHash"]["value"].as_str(),
            spec["signatures"].as_array().into_iter().flatten().filter_map(|s| s["signature"].as_str()).collect(),
        ),
        other => return Err(format!("log entry of kind {} is not supported", super::shown(other.unwrap_or("?")))),
    };
    if hash != Some(logged_hash.hex()) {
        return Err("the log entry records other bytes".into());
    }
    if !signatures.iter().any(|s| base64_decode(s).is_ok_and(|s| s == evidence.signature)) {
        return Err("the log entry records another signature".into());
    }
    Ok(())
}

/// The certificate chains to a CA of the root for code signing at `time`.
fn check_chain(root: &TrustedRoot, evidence: &Evidence<'_>, time: i64) -> Result<(), String> {
    let leaf = CertificateDer::from(evidence.certificate.as_slice());
    let leaf = webpki::EndEntityCert::try_from(&leaf).map_err(|e| format!("certificate: {e}"))?;
    let time = u64::try_from(time).map_err(|_| "log entry time before 1970")?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(time));
    let mut last = String::from("no certificate authority");
    for chain in &root.authorities {
        let (anchor, intermediates) = chain.split_last().expect("trusted roots hold no empty chain");
        let anchor = CertificateDer::from(anchor.as_slice());
        let anchors = match webpki::anchor_from_trusted_cert(&anchor) {
            Ok(anchor) => vec![anchor.to_owned()],
            Err(error) => {
                last = format!("trusted root CA: {error}");
                continue;
            }
        };
        let intermediates: Vec<CertificateDer> =
            intermediates.iter().chain(&evidence.chain).map(|der| CertificateDer::from(der.as_slice())).collect();
        let usage = webpki::KeyUsage::required(CODE_SIGNING.as_bytes());
        match leaf.verify_for_usage(webpki::ALL_VERIFICATION_ALGS, &anchors, &intermediates, time, usage, None, None) {
            Ok(_) => return Ok(()),
            Err(error) => last = error.to_string(),
        }
    }
    Err(format!("certificate does not chain to a Fulcio CA of the trusted root at the log time: {last}"))
}

/// The certificate's OIDC issuer and subject (its first URI or email subject alternative name).
fn identity(certificate: &Certificate) -> Result<(String, String), String> {
    let extensions = certificate.tbs_certificate().extensions().map(|e| e.as_slice()).unwrap_or_default();
    let issuer = extensions
        .iter()
        .find_map(|ext| match ext.extn_id {
            ISSUER_V2 => Utf8StringRef::from_der(ext.extn_value.as_bytes()).ok().map(|s| s.as_str().to_string()),
            ISSUER_V1 => std::str::from_utf8(ext.extn_value.as_bytes()).ok().map(str::to_string),
            _ => None,
        })
        .ok_or("certificate names no OIDC issuer")?;
    let names = extensions
        .iter()
        .find(|ext| ext.extn_id == SUBJECT_ALT_NAME)
        .and_then(|ext| SubjectAltName::from_der(ext.extn_value.as_bytes()).ok())
        .ok_or("certificate has no subject alternative name")?;
    let subject = names
        .0
        .iter()
        .find_map(|name| match name {
            GeneralName::UniformResourceIdentifier(uri) => Some(uri.to_string()),
            GeneralName::Rfc822Name(email) => Some(email.to_string()),
            _ => None,
        })
        .ok_or("certificate names no URI or email subject")?;
    Ok((issuer, subject))
}

/// A number the way Sigstore's JSON writes 64-bit integers: as a string, or as a number.
pub(super) fn int64(value: &serde_json::Value) -> Option<i64> {
    value.as_i64().or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

/// The Rekor entry of cosign's `dev.sigstore.cosign/bundle` annotation.
pub(super) fn legacy_entry(annotation: &str) -> Result<LogEntry, String> {
    let value: serde_json::Value =
        serde_json::from_str(annotation).map_err(|e| format!("bundle annotation is not JSON ({e})"))?;
    let payload = &value["Payload"];
    let malformed = || "bundle annotation lacks the entry or its timestamp".to_string();
    Ok(LogEntry {
        body: payload["body"].as_str().ok_or_else(malformed)?.to_string(),
        integrated_time: int64(&payload["integratedTime"]).ok_or_else(malformed)?,
        log_index: int64(&payload["logIndex"]).ok_or_else(malformed)?,
        log_id: payload["logID"].as_str().ok_or_else(malformed)?.to_string(),
        signed_entry_timestamp: base64_decode(value["SignedEntryTimestamp"].as_str().ok_or_else(malformed)?)?,
    })
}

/// The Rekor entry of a Sigstore bundle's `tlogEntries[0]`.
pub(super) fn bundle_entry(entry: &serde_json::Value) -> Result<LogEntry, String> {
    let malformed = || "bundle log entry lacks its body, time, log or promise".to_string();
    let key_id = base64_decode(entry["logId"]["keyId"].as_str().ok_or_else(malformed)?)?;
    Ok(LogEntry {
        body: entry["canonicalizedBody"].as_str().ok_or_else(malformed)?.to_string(),
        integrated_time: int64(&entry["integratedTime"]).ok_or_else(malformed)?,
        log_index: int64(&entry["logIndex"]).ok_or_else(malformed)?,
        log_id: hex::encode(key_id),
        signed_entry_timestamp: base64_decode(
            entry["inclusionPromise"]["signedEntryTimestamp"].as_str().ok_or_else(malformed)?,
        )?,
    })
}

/// Certificates of a PEM text (a cosign `certificate` or `chain` annotation), as DER.
pub(super) fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let certificates =
        Certificate::load_pem_chain(text.as_bytes()).map_err(|e| format!("not PEM certificates ({e})"))?;
    certificates.iter().map(|c| c.to_der().map_err(|e| e.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn the_pinned_public_good_root_names_sigstores_logs_and_fulcio() {
        let root = TrustedRoot::public_good().unwrap();
        assert_eq!(root.logs.len(), 2, "rekor.sigstore.dev and its 2025 shard");
        assert_eq!(root.authorities.len(), 2, "the Fulcio CA and its intermediate chains");
    }
    use crate::oci::cosign_tag;
    use crate::testing::memory::MemoryRegistry;
    use crate::testing::sigstore::{TestSigstore, now};
    use crate::testing::testdata::{self, Built};
    use crate::verify::{Identity, Mode, Verdict, check};

    const ISSUER: &str = "https://accounts.google.com";
    const SUBJECT: &str = "https://ci.example/release";

    fn policy(root: &str) -> Policy {
        Policy {
            mode: Mode::Enforce,
            keys: Vec::new(),
            identities: vec![Identity {
                issuer: ISSUER.into(),
                subject: crate::verify::Subject::Exact(SUBJECT.into()),
            }],
            trusted_root: Some(Arc::new(TrustedRoot::from_json(root.as_bytes()).unwrap())),
        }
    }

    /// `app:v1`, signed keyless through `sigstore`.
    fn signed_by(sigstore: &TestSigstore) -> (MemoryRegistry, Digest) {
        let registry = MemoryRegistry::new("src");
        let built = testdata::index(1, &[(0, 100)], &[("linux", "amd64")], false);
        registry.insert("app", "v1", &built);
        let signature = sigstore.keyless_signature(built.digest(), ISSUER, SUBJECT, now() + 60);
        registry.insert("app", &cosign_tag(built.digest(), "sig"), &Built::Image(signature));
        (registry, built.digest().clone())
    }

    async fn reason(registry: &MemoryRegistry, digest: &Digest, policy: &Policy) -> String {
        match check(registry, "app", digest, policy).await {
            Verdict::Unverified { reason } => reason,
            Verdict::Verified { signer } => panic!("verified by {signer}"),
        }
    }

    #[tokio::test]
    async fn an_entry_from_a_log_outside_the_trusted_root_is_refused() {
        let (ours, theirs) = (TestSigstore::new(), TestSigstore::new());
        let (registry, digest) = signed_by(&theirs);
        let reason = reason(&registry, &digest, &policy(&ours.trusted_root())).await;
        assert!(
            reason.contains(&format!("log entry from log {} not in the trusted root", theirs.log_id())),
            "{reason}"
        );
    }

    #[tokio::test]
    async fn a_certificate_from_a_ca_outside_the_trusted_root_is_refused() {
        let (ours, theirs) = (TestSigstore::new(), TestSigstore::new());
        let (registry, digest) = signed_by(&theirs);
        // Their log is trusted, their CA is not.
        let mut root: serde_json::Value = serde_json::from_str(&ours.trusted_root()).unwrap();
        let theirs_root: serde_json::Value = serde_json::from_str(&theirs.trusted_root()).unwrap();
        root["tlogs"] = theirs_root["tlogs"].clone();
        let reason = reason(&registry, &digest, &policy(&root.to_string())).await;
        assert!(reason.contains("certificate does not chain to a Fulcio CA of the trusted root"), "{reason}");
        assert!(matches!(
            check(&registry, "app", &digest, &policy(&theirs.trusted_root())).await,
            Verdict::Verified { .. }
        ));
    }

    #[test]
    fn a_trusted_root_without_a_log_or_with_a_broken_certificate_is_refused() {
        let sigstore = TestSigstore::new();
        let root: serde_json::Value = serde_json::from_str(&sigstore.trusted_root()).unwrap();
        let mut broken = root.clone();
        broken["certificateAuthorities"][0]["certChain"]["certificates"][0]["rawBytes"] = serde_json::json!("AAAA");
        let error = TrustedRoot::from_json(broken.to_string().as_bytes()).unwrap_err();
        assert!(error.starts_with("certificateAuthorities[0]: not a certificate"), "{error}");
        let mut root = root;
        root["tlogs"] = serde_json::json!([]);
        let error = TrustedRoot::from_json(root.to_string().as_bytes()).unwrap_err();
        assert!(error.contains("names no transparency log"), "{error}");
    }
}
