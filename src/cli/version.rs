//! `ocync version`: what this binary is: version, git commit, target and the features that
//! change what it can do.

use super::Exit;

/// Cargo features compiled into this binary that change what it can do.
fn features() -> Vec<&'static str> {
    let mut features = Vec::new();
    if cfg!(feature = "lambda") {
        features.push("lambda");
    }
    features
}

/// The report, one `key: value` per line after the first (`ocync X.Y.Z`); scripts can grep it.
pub fn report() -> String {
    let features = features();
    let features = if features.is_empty() { "none".to_string() } else { features.join(", ") };
    format!(
        "ocync {}\ncommit: {}\ntarget: {}\nfeatures: {features}\n",
        env!("CARGO_PKG_VERSION"),
        env!("OCYNC_GIT_COMMIT"),
        env!("OCYNC_TARGET"),
    )
}

/// Prints the report.
pub fn run() -> Exit {
    print!("{}", report());
    Exit::Success
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_version_commit_target_and_features() {
        let report = report();
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines[0], format!("ocync {}", env!("CARGO_PKG_VERSION")));
        let keys: Vec<&str> = lines[1..].iter().map(|line| line.split_once(": ").expect("key: value").0).collect();
        assert_eq!(keys, ["commit", "target", "features"]);
        assert!(lines.contains(&format!("target: {}", env!("OCYNC_TARGET")).as_str()), "{report}");
        assert!(!env!("OCYNC_TARGET").is_empty() && !env!("OCYNC_GIT_COMMIT").is_empty());
    }
}
