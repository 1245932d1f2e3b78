//! Non-distributable ("foreign") layers: Windows base images and some vendor images list
//! layers the serving registry need not hold (clients fetch them from the descriptor's
//! `urls`), and registries accept a manifest listing them without the blob. Such a layer is
//! copied only when the source holds it, which one HEAD at the source tells; otherwise it is
//! left out, counted at each target, and the manifest bytes go unchanged, as skopeo and crane
//! do by default. It is never read from the source unless the source holds it, and the
//! target is not asked about it.

use super::stats::Event;
use super::{Engine, Live, Source};
use crate::oci::BlobDescriptor;
use crate::registry::Registry;

impl Engine {
    /// The non-distributable layers of one manifest that the source holds, to be copied like
    /// any blob; each of the others is counted as left out at every target in `lives`.
    pub(super) async fn foreign_held_at_source<R: Registry>(
        &self,
        source: &Source<'_, R>,
        foreign: &[BlobDescriptor],
        lives: &[&Live<'_, R>],
    ) -> Vec<BlobDescriptor> {
        let mut seen = std::collections::HashSet::new();
        let checks = foreign.iter().filter(|blob| seen.insert(&blob.digest)).map(|blob| async move {
            match source.registry.blob_exists(source.repository, &blob.digest).await {
                Ok(held) => (blob, held),
                Err(error) => {
                    // Leaving it out is what a registry serving the image does anyway; the
                    // manifest still names where to fetch it.
                    tracing::warn!(digest = %blob.digest, repository = source.repository, %error, "cannot tell whether the source holds a non-distributable layer; leaving it out");
                    (blob, false)
                }
            }
        });
        let mut held = Vec::new();
        for (blob, at_source) in futures_util::future::join_all(checks).await {
            if at_source {
                held.push(blob.clone());
            } else {
                lives.iter().for_each(|live| self.record(live, Event::ForeignLeftOut));
            }
        }
        held
    }
}

/// The report's note for an image whose non-distributable layers were left out.
pub(super) fn left_out_warning(count: u64) -> String {
    format!(
        "{count} non-distributable (foreign) layer(s) not copied: the source does not hold them; the manifest, unchanged, still lists them with their URLs"
    )
}

#[cfg(test)]
mod tests {
    use crate::cancel::Cancel;
    use crate::engine::{Engine, ImageJob, Limits, Outcome, Source, Target};
    use crate::registry::Registry as _;
    use crate::testing::memory::{MemoryRegistry, Op};
    use crate::testing::testdata::{self, Built};

    fn copy_job<'a>(source: &'a MemoryRegistry, target: &'a MemoryRegistry) -> ImageJob<'a, MemoryRegistry> {
        ImageJob {
            source: Source {
                registry: source,
                repository: "win",
                reference: "v1".into(),
                digest: None,
                media_type: None,
            },
            targets: vec![Target { registry: target, repository: "mirror", reference: "v1".into(), current: None }],
            artifacts: None,
            verify: None,
            platforms: &[],
        }
    }

    #[tokio::test]
    async fn a_foreign_layer_the_source_lacks_is_neither_read_nor_sent_and_the_manifest_goes_unchanged() {
        for docker in [true, false] {
            let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
            let built = testdata::foreign_layer_image(1, docker);
            source.insert("win", "v1", &Built::Image(built.image.clone()));

            let report = Engine::new(Limits::new(4, []), Cancel::default(), 4).copy(&copy_job(&source, &target)).await;
            assert_eq!(report.targets[0].outcome, Outcome::Synced, "docker: {docker}");
            assert_eq!(target.tags("mirror")["v1"], built.image.manifest.digest, "same bytes, same digest");
            assert!(!target.has_blob("mirror", &built.foreign.descriptor.digest));
            assert_eq!(source.count(Op::GetBlob), 2, "config and ordinary layer only");
            assert_eq!(source.count(Op::BlobExists), 1, "one HEAD asks the source about the foreign layer");
            assert_eq!(target.count(Op::BlobExists), 2, "the target is not asked about it");
            assert_eq!(target.count(Op::PushBlob), 2);
            let stats = report.targets[0].stats;
            assert_eq!((stats.blobs_copied, stats.blobs_foreign_left_out), (2, 1));
            assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
            assert!(report.warnings[0].starts_with("1 non-distributable (foreign) layer(s) not copied"));
        }
    }

    #[tokio::test]
    async fn a_foreign_layer_the_source_holds_is_copied_like_any_blob() {
        let (source, target) = (MemoryRegistry::new("src"), MemoryRegistry::new("dst"));
        let built = testdata::foreign_layer_image(2, false);
        source.insert("win", "v1", &Built::Image(built.image.clone()));
        source.push_blob("win", &built.foreign.descriptor, built.foreign.stream(), None).await.unwrap();
        source.reset_counts();

        let report = Engine::new(Limits::new(4, []), Cancel::default(), 4).copy(&copy_job(&source, &target)).await;
        assert_eq!(report.targets[0].outcome, Outcome::Synced);
        assert!(target.has_blob("mirror", &built.foreign.descriptor.digest));
        assert_eq!(source.count(Op::GetBlob), 3);
        let stats = report.targets[0].stats;
        assert_eq!((stats.blobs_copied, stats.blobs_foreign_left_out), (3, 0));
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    }
}
