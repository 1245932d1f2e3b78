//! `ocync version`: what this binary is (version, git commit, target, features) and whether its
//! crypto module runs in FIPS mode.

use super::Exit;
use crate::fips;

/// Cargo features compiled into this binary that change what it can do.
fn features() -> Vec<&'static str> {
    let mut features = Vec::new();
    if fips::BUILT_WITH_FIPS {
        features.push("fips");
    }
    if cfg!(feature = "lambda") {
        features.push("lambda");
    }
    features
}

/// The report, one `key: value` per line after the first (`ocync X.Y.Z`); scripts can grep it.
pub fn report(status: &fips::Status) -> String {
    let features = features();
    let features = if features.is_empty() { "none".to_string() } else { features.join(", ") };
    format!(
        "ocync {}\ncommit: {}\ntarget: {}\nfeatures: {features}\nfips: {}\n",
        env!("CARGO_PKG_VERSION"),
        env!("OCYNC_GIT_COMMIT"),
        env!("OCYNC_TARGET"),
        status.describe(),
    )
}

/// Prints the report; exit 2 when a `fips` build is not in FIPS mode (the report says why).
pub fn run() -> Exit {
    let status = fips::status();
    print!("{}", report(&status));
    match status.check() {
        Ok(()) => Exit::Success,
        Err(_) => Exit::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_version_commit_target_features_and_fips() {
        let report = report(&fips::status());
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines[0], format!("ocync {}", env!("CARGO_PKG_VERSION")));
        let keys: Vec<&str> = lines[1..].iter().map(|line| line.split_once(": ").expect("key: value").0).collect();
        assert_eq!(keys, ["commit", "target", "features", "fips"]);
        assert!(lines.contains(&format!("target: {}", env!("OCYNC_TARGET")).as_str()), "{report}");
        assert!(!env!("OCYNC_TARGET").is_empty() && !env!("OCYNC_GIT_COMMIT").is_empty());
    }
}
