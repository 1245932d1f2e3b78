//! [`run`], the one run path: a selection of mappings, and the phases of a [`Shutdown`].

use std::time::Duration;

use super::*;
use crate::cancel::Shutdown;

async fn run_with(world: &World, indices: &[usize], shutdown: &Shutdown) -> Result<SyncReport, Error> {
    let mappings = select(&world.config, indices).expect("indices in the config");
    let engine = super::super::engine(&world.config, shutdown.cancel().clone());
    run(&world.config, &mappings, &world.clients(), &engine, shutdown).await
}

#[test]
fn select_takes_the_indices_asked_for_all_when_none_and_names_an_unknown_one() {
    let (world, _) = seeded_two_targets();
    let indices = |picked: Vec<&Mapping>| picked.iter().map(|m| m.index).collect::<Vec<_>>();
    assert_eq!(indices(select(&world.config, &[]).unwrap()), [0, 1]);
    assert_eq!(indices(select(&world.config, &[1]).unwrap()), [1]);
    let error = select(&world.config, &[1, 2]).unwrap_err();
    assert_eq!(error, Error::UnknownMapping { index: 2, count: 2 });
    assert_eq!(error.to_string(), "no mapping 2 in the config: it has 2 mappings");
}

#[tokio::test]
async fn a_run_over_one_mapping_copies_that_mapping_only() {
    let (world, images) = seeded_two_targets();
    let report = run_with(&world, &[1], &Shutdown::never()).await.expect("not abandoned");

    assert_eq!(report.status, RunStatus::Success, "{}", report.summary());
    assert!(!report.interrupted);
    assert_eq!(report.mappings.iter().map(|m| m.index).collect::<Vec<_>>(), [1]);
    for target in ["a", "b"] {
        let tags = world.registry(target).tags("mirror/web");
        assert_eq!(tags.keys().collect::<Vec<_>>(), ["v1"], "only the v* tags of team/web");
        assert_eq!(&tags["v1"], images[2].digest(), "the source digest, unchanged");
        assert!(world.registry(target).tags("mirror/api").is_empty(), "mapping 0 was not selected");
    }
    let json = serde_json::to_value(&report).unwrap();
    assert!(json.get("interrupted").is_none(), "a whole run says nothing about interruption: {json}");
}

#[tokio::test]
async fn after_the_stop_a_run_starts_no_transfer_and_says_it_was_interrupted() {
    let (world, _) = seeded_two_targets();
    let stop = Cancel::default();
    stop.cancel();
    let shutdown = Shutdown::after(stop, Duration::from_secs(3600));
    let report = run_with(&world, &[], &shutdown).await.expect("the grace period has not run out");

    assert!(report.interrupted);
    assert_eq!(serde_json::to_value(&report).unwrap()["interrupted"], serde_json::json!(true));
    assert_eq!(report.status, RunStatus::Failed, "{}", report.summary());
    assert_eq!(report.totals.failed, 6, "three images at two targets: {}", report.summary());
    for target in ["a", "b"] {
        assert_eq!(world.registry(target).count(Op::PushBlob), 0, "no blob started after the stop");
        assert_eq!(world.registry(target).count(Op::PutManifest), 0, "nothing tagged");
    }
    assert_eq!(world.registry("src").count(Op::GetBlob), 0);
}

#[tokio::test(start_paused = true)]
async fn a_run_abandoned_before_planning_finished_has_no_report_and_reads_nothing() {
    let (world, _) = seeded_two_targets();
    let stop = Cancel::default();
    let shutdown = Shutdown::after(stop.clone(), Duration::from_secs(30));
    stop.cancel();
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert!(shutdown.is_abandoned());

    assert_eq!(run_with(&world, &[], &shutdown).await.unwrap_err(), Error::Abandoned);
    assert_eq!(world.registry("src").count(Op::ListTags), 0, "discovery never ran");
}

#[tokio::test(start_paused = true)]
async fn a_deadline_run_finishes_when_the_work_fits_before_the_margin() {
    let (world, _) = seeded_two_targets();
    let deadline = std::time::Instant::now() + Duration::from_secs(900);
    let shutdown = Shutdown::deadline(deadline, Duration::from_secs(30), Duration::from_secs(3));
    let report = run_with(&world, &[0], &shutdown).await.expect("well before the deadline");
    assert_eq!(report.status, RunStatus::Success, "{}", report.summary());
    assert!(!report.interrupted && !shutdown.is_stopping());
    assert_eq!(world.registry("a").tags("mirror/api").len(), 2, "{}", report.summary());
}
