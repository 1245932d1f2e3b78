//! Verifying signatures before mirroring (`verify:` in the config): an image is copied only
//! once a signature by a trusted key or identity over its digest has verified.
//!
//! Signatures are read from the source, in the two shapes cosign pushes: the legacy
//! `sha256-<hex>.sig` tag ([`cosign`]) and Sigstore bundles attached as OCI 1.1 referrers
//! ([`bundle`]). Each candidate either verifies, naming its signer, or says why not; an image
//! none of whose candidates verifies is [`Verdict::Unverified`] with all those reasons.
//! Everything read is untrusted and bounded: at most [`MAX_CANDIDATES`] signatures per image,
//! each body at most [`MAX_SIGNATURE_BYTES`].

pub mod bundle;
mod cosign;
pub mod keyless;
pub mod keys;
pub mod policy;

use futures_util::StreamExt;

pub use keyless::TrustedRoot;
pub use keys::PublicKey;
pub use policy::{Identity, Mode, Policy, Subject};

use crate::oci::{BlobDescriptor, Digest};
use crate::registry::Registry;

/// Signatures looked at per image and format: cosign appends a layer per signing, so a
/// long-lived tag can carry many; more than this is not a signing history but a flood.
pub const MAX_CANDIDATES: usize = 32;

/// The largest signature payload or bundle read: real ones are a few KiB (a bundle with a
/// certificate chain and a log entry stays under 20 KiB).
pub const MAX_SIGNATURE_BYTES: u64 = 256 * 1024;

/// The parts of a signature's manifest read here: a cosign `.sig` image manifest, or a
/// bundle referrer's artifact manifest.
#[derive(serde::Deserialize)]
struct SignatureManifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

/// One layer of a [`SignatureManifest`]: a simple-signing payload (its signature and
/// certificate in the annotations) or a bundle.
#[derive(serde::Deserialize)]
struct Layer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

/// The outcome of checking one image against a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A signature verified.
    Verified {
        /// Who signed: `key sha256:<fingerprint>`, or `keyless <issuer> <subject>`.
        signer: String,
    },
    /// Nothing verified.
    Unverified {
        /// What was found and why each candidate failed.
        reason: String,
    },
}

/// A signature found upstream, verified or not.
type Candidate = Result<String, String>;

/// Checks `digest` in `repository` against `policy`, reading signatures from `registry`.
pub async fn check<R: Registry>(registry: &R, repository: &str, digest: &Digest, policy: &Policy) -> Verdict {
    let mut reasons = Vec::new();
    // The legacy tag first (what most publishers push); bundles are looked up only if it
    // holds nothing that verifies.
    for format in [Format::Cosign, Format::Bundle] {
        let candidates = match format {
            Format::Cosign => cosign::candidates(registry, repository, digest, policy).await,
            Format::Bundle => bundle::candidates(registry, repository, digest, policy).await,
        };
        match candidates {
            Ok(found) => {
                for (name, candidate) in found {
                    match candidate {
                        Ok(signer) => return Verdict::Verified { signer },
                        Err(reason) => reasons.push(format!("{name}: {reason}")),
                    }
                }
            }
            Err(missing) => reasons.push(missing),
        }
    }
    Verdict::Unverified { reason: reasons.join("; ") }
}

/// Where signatures are looked for, in order.
enum Format {
    /// cosign's `sha256-<hex>.sig` tag.
    Cosign,
    /// Sigstore bundle referrers.
    Bundle,
}

/// The signer named for a key.
fn key_signer(key: &PublicKey) -> String {
    format!("key {}", key.fingerprint())
}

/// Which listed key verifies `signature` over `message`, as a signer; otherwise why not.
fn by_key(policy: &Policy, message: &[u8], signature: &[u8]) -> Candidate {
    match policy.keys.iter().find(|key| key.verifies(message, signature)) {
        Some(key) => Ok(key_signer(key)),
        None if policy.keys.is_empty() => Err("signed with a key, and verify lists no keys".into()),
        None => Err(format!("no listed key ({}) verifies the signature", policy.keys.len())),
    }
}

/// A small blob from the source, whole and digest-checked, at most [`MAX_SIGNATURE_BYTES`].
async fn read_small<R: Registry>(registry: &R, repository: &str, blob: &BlobDescriptor) -> Result<Vec<u8>, String> {
    if blob.size > MAX_SIGNATURE_BYTES {
        return Err(format!("{} declares {} bytes (limit {MAX_SIGNATURE_BYTES})", blob.digest, blob.size));
    }
    let mut stream =
        registry.get_blob(repository, blob).await.map_err(|e| format!("cannot read {}: {e}", blob.digest))?;
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("cannot read {}: {e}", blob.digest))?;
        bytes.extend_from_slice(&chunk);
        if bytes.len() as u64 > MAX_SIGNATURE_BYTES {
            return Err(format!("{} is larger than {MAX_SIGNATURE_BYTES} bytes", blob.digest));
        }
    }
    Ok(bytes)
}

/// Base64 as cosign and Sigstore write it (standard alphabet, padded).
fn base64_decode(text: &str) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text.trim()).map_err(|e| format!("not base64 ({e})"))
}

/// Text from a signature, for a message: control characters escaped, cut at 100 characters.
fn shown(text: &str) -> String {
    let clean = crate::text::sanitize(text);
    match clean.char_indices().nth(100) {
        Some((at, _)) => format!("{}…", &clean[..at]),
        None => clean.into_owned(),
    }
}
