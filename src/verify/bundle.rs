//! Sigstore bundles attached as OCI 1.1 referrers (`cosign sign --new-bundle-format`): an
//! artifact of type [`BUNDLE`] whose layer is the bundle JSON. cosign signs an image as a DSSE
//! envelope holding an in-toto statement whose subject is the image's digest; the signature
//! covers the envelope's pre-authentication encoding (PAE).

use serde::Deserialize;

use super::keyless::{self, Evidence};
use super::{Candidate, MAX_CANDIDATES, Policy, SignatureManifest, base64_decode, by_key, read_small, shown};
use crate::oci::{BlobDescriptor, Digest, Referrer, fallback_tag, parse_index};
use crate::registry::Registry;

/// The artifact type (and layer media type) of a Sigstore bundle, v0.3.
pub const BUNDLE: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";

/// The parts of a bundle read here.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Bundle {
    #[serde(default)]
    verification_material: VerificationMaterial,
    dsse_envelope: Option<Envelope>,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMaterial {
    certificate: Option<RawCertificate>,
    x509_certificate_chain: Option<RawChain>,
    #[serde(default)]
    tlog_entries: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawCertificate {
    raw_bytes: String,
}

#[derive(Deserialize)]
struct RawChain {
    #[serde(default)]
    certificates: Vec<RawCertificate>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    payload: String,
    payload_type: String,
    #[serde(default)]
    signatures: Vec<EnvelopeSignature>,
}

#[derive(Deserialize)]
struct EnvelopeSignature {
    sig: String,
}

/// An in-toto statement's subjects.
#[derive(Deserialize)]
struct Statement {
    #[serde(default)]
    subject: Vec<StatementSubject>,
}

#[derive(Deserialize)]
struct StatementSubject {
    #[serde(default)]
    digest: std::collections::BTreeMap<String, String>,
}

/// The bundles referring to `digest`, each named by its manifest digest and checked; `Err`
/// says why there are none.
pub(super) async fn candidates<R: Registry>(
    registry: &R,
    repository: &str,
    digest: &Digest,
    policy: &Policy,
) -> Result<Vec<(String, Candidate)>, String> {
    let referrers = referrers(registry, repository, digest).await?;
    let bundles: Vec<&Referrer> =
        referrers.iter().filter(|r| r.artifact_type.as_deref() == Some(BUNDLE)).take(MAX_CANDIDATES).collect();
    if bundles.is_empty() {
        return Err("no sigstore bundle referrer".into());
    }
    let mut found = Vec::new();
    for referrer in bundles {
        let candidate = check_referrer(registry, repository, digest, &referrer.digest, policy).await;
        found.push((format!("bundle {}", referrer.digest), candidate));
    }
    Ok(found)
}

/// The referrers of `digest`: the referrers API, or the fallback tag where there is none.
async fn referrers<R: Registry>(registry: &R, repository: &str, digest: &Digest) -> Result<Vec<Referrer>, String> {
    match registry.list_referrers(repository, digest, Some(BUNDLE)).await {
        Ok(Some(listed)) => return Ok(listed),
        Ok(None) => {}
        Err(error) => return Err(format!("cannot list referrers: {error}")),
    }
    let tag = fallback_tag(digest);
    match registry.get_manifest(repository, &tag).await {
        Ok(index) => parse_index(&index.bytes).map_err(|e| format!("referrers tag {tag}: {e}")),
        Err(error) if error.is_not_found() => Ok(Vec::new()),
        Err(error) => Err(format!("cannot read referrers tag {tag}: {error}")),
    }
}

async fn check_referrer<R: Registry>(
    registry: &R,
    repository: &str,
    digest: &Digest,
    referrer: &Digest,
    policy: &Policy,
) -> Candidate {
    let manifest =
        registry.get_manifest(repository, referrer.as_str()).await.map_err(|e| format!("cannot read: {e}"))?;
    let parsed: SignatureManifest =
        serde_json::from_slice(&manifest.bytes).map_err(|e| format!("not an artifact manifest ({e})"))?;
    let layer = parsed.layers.iter().find(|l| l.media_type == BUNDLE).ok_or("no bundle layer")?;
    let blob = BlobDescriptor { digest: layer.digest.clone(), size: layer.size };
    let bundle: Bundle = serde_json::from_slice(&read_small(registry, repository, &blob).await?)
        .map_err(|e| format!("not a sigstore bundle ({e})"))?;
    let envelope = bundle.dsse_envelope.ok_or("no DSSE envelope (a message signature cannot name an image)")?;
    let payload = base64_decode(&envelope.payload).map_err(|e| format!("envelope payload {e}"))?;
    let statement: Statement =
        serde_json::from_slice(&payload).map_err(|e| format!("envelope payload is not an in-toto statement ({e})"))?;
    let names_image =
        statement.subject.iter().any(|s| s.digest.get(digest.algorithm()).is_some_and(|hex| hex == digest.hex()));
    if !names_image {
        let named: Vec<String> =
            statement.subject.iter().flat_map(|s| s.digest.iter().map(|(a, h)| format!("{a}:{h}"))).collect();
        return Err(format!("signs {}, not this image", shown(&named.join(", "))));
    }
    let message = pae(&envelope.payload_type, &payload);
    let material = &bundle.verification_material;
    // A certificate (or a chain, leaf first) makes it keyless; otherwise a key signed it.
    let certificates: Vec<&RawCertificate> = match (&material.certificate, &material.x509_certificate_chain) {
        (Some(leaf), _) => vec![leaf],
        (None, Some(chain)) => chain.certificates.iter().collect(),
        (None, None) => Vec::new(),
    };
    let mut last = Err("the envelope holds no signature".to_string());
    for signature in envelope.signatures.iter().take(MAX_CANDIDATES) {
        let signature = base64_decode(&signature.sig).map_err(|e| format!("signature {e}"))?;
        last = match certificates.split_first() {
            None => by_key(policy, &message, &signature),
            Some((leaf, chain)) => {
                let der = |c: &&RawCertificate| base64_decode(&c.raw_bytes);
                let evidence = Evidence {
                    certificate: der(leaf).map_err(|e| format!("certificate {e}"))?,
                    chain: chain.iter().map(der).collect::<Result<_, _>>().map_err(|e| format!("chain {e}"))?,
                    message: &message,
                    logged: &payload,
                    signature: &signature,
                    entry: material.tlog_entries.first().map(keyless::bundle_entry).transpose()?,
                };
                keyless::verify(policy, &evidence)
            }
        };
        if last.is_ok() {
            break;
        }
    }
    last
}

/// DSSE's pre-authentication encoding: what an envelope's signatures cover.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut message = format!("DSSEv1 {} {payload_type} {} ", payload_type.len(), payload.len()).into_bytes();
    message.extend_from_slice(payload);
    message
}
