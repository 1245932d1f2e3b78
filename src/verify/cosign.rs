//! cosign's legacy signatures: an image tagged `sha256-<hex>.sig` whose layers are
//! simple-signing payloads, each with its signature in the `dev.cosignproject.cosign/signature`
//! annotation. A payload counts only if it names exactly the image's digest.

use serde::Deserialize;

use super::{Candidate, MAX_CANDIDATES, Policy, base64_decode, by_key, read_small, shown};
use crate::oci::{BlobDescriptor, Digest, cosign_tag};
use crate::registry::Registry;

/// The media type of a simple-signing payload layer.
pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The annotation holding the base64 signature over the payload.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The annotation holding a keyless signature's Fulcio certificate.
pub const CERTIFICATE_ANNOTATION: &str = "dev.sigstore.cosign/certificate";

/// The parts of a `.sig` manifest read here.
#[derive(Deserialize)]
struct SignatureManifest {
    #[serde(default)]
    layers: Vec<Layer>,
}

#[derive(Deserialize)]
struct Layer {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: Digest,
    size: u64,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

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
    if layer.annotations.contains_key(CERTIFICATE_ANNOTATION) {
        return Err("keyless signature; keyless verification is not available in this build".into());
    }
    by_key(policy, &payload, &signature)
}
