//! cosign's legacy signatures: an image tagged `sha256-<hex>.sig` whose layers are
//! simple-signing payloads, each with its signature in the `dev.cosignproject.cosign/signature`
//! annotation. A payload counts only if it names exactly the image's digest.

use serde::Deserialize;

use super::keyless::{self, Evidence};
use super::{Candidate, Layer, MAX_CANDIDATES, Policy, SignatureManifest, base64_decode, by_key, read_small, shown};
use crate::oci::{BlobDescriptor, Digest, cosign_tag};
use crate::registry::Registry;

/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding the base64 signature over the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The annotation holding a keyless signature's Fulcio certificate (PEM).
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";
/// The annotation holding the certificate's intermediates (PEM).
pub const CHAIN_ANNOTATION: &str = "dev.sigstore.cosign/chain";
/// The annotation holding the Rekor entry and its signed entry timestamp (JSON).
pub const BUNDLE_ANNOTATION: &str = "dev.sigstore.cosign/bundle";

/// The part of a simple-signing payload that binds it to an image.
#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    image: PayloadImage,
}

#[derive(Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    digest: String,
}

/// The signatures of the `.sig` tag of `digest`, each named (`sha256-….sig[0]`) and checked;
/// `Err` says why there are none.
pub(super) async fn candidates<R: Registry>(
    registry: &R,
    repository: &str,
    digest: &Digest,
    policy: &Policy,
) -> Result<Vec<(String, Candidate)>, String> {
    let tag = cosign_tag(digest, "sig");
    let manifest = match registry.get_manifest(repository, &tag).await {
        Ok(manifest) => manifest,
        Err(error) if error.is_not_found() => return Err(format!("no {tag} tag")),
        Err(error) => return Err(format!("cannot read {tag}: {error}")),
    };
    let parsed: SignatureManifest =
        serde_json::from_slice(&manifest.bytes).map_err(|e| format!("{tag} is not an image manifest ({e})"))?;
    let mut found = Vec::new();
    for (i, layer) in parsed.layers.iter().enumerate().take(MAX_CANDIDATES) {
        let name = format!("{tag}[{i}]");
        let candidate = if layer.media_type != SIMPLE_SIGNING {
            Err(format!("layer of type {} is no simple-signing payload", layer.media_type))
        } else {
            check_layer(registry, repository, digest, layer, policy).await
        };
        found.push((name, candidate));
    }
    if found.is_empty() {
        return Err(format!("{tag} holds no signature"));
    }
    Ok(found)
}

async fn check_layer<R: Registry>(
    registry: &R,
    repository: &str,
    digest: &Digest,
    layer: &Layer,
    policy: &Policy,
) -> Candidate {
    let signature = layer.annotations.get(SIGNATURE_ANNOTATION).ok_or("no signature annotation")?;
    let signature = base64_decode(signature).map_err(|e| format!("signature {e}"))?;
    let blob = BlobDescriptor { digest: layer.digest.clone(), size: layer.size };
    let payload = read_small(registry, repository, &blob).await?;
    let named: Payload =
        serde_json::from_slice(&payload).map_err(|e| format!("payload is not simple signing ({e})"))?;
    if named.critical.image.digest != digest.as_str() {
        return Err(format!("signs {}, not this image", shown(&named.critical.image.digest)));
    }
    let Some(certificate) = layer.annotations.get(CERTIFICATE_ANNOTATION) else {
        return by_key(policy, &payload, &signature);
    };
    let certificate = keyless::pem_certificates(certificate)?.into_iter().next().ok_or("empty certificate")?;
    let chain = match layer.annotations.get(CHAIN_ANNOTATION) {
        Some(chain) => keyless::pem_certificates(chain)?,
        None => Vec::new(),
    };
    let entry = layer.annotations.get(BUNDLE_ANNOTATION).map(|b| keyless::legacy_entry(b)).transpose()?;
    let evidence = Evidence { certificate, chain, message: &payload, logged: &payload, signature: &signature, entry };
    keyless::verify(policy, &evidence)
}
