//! Where a config comes from: a file, or an S3 object (`s3://bucket/key`). S3 configs are
//! cached per bucket and key and fetched again only when the object's ETag changes, so a warm
//! Lambda container pays one `HeadObject` per invocation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::{Config, Error};

/// A config location as users write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigLocation {
    /// A local file.
    File(PathBuf),
    /// An S3 object.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
    },
}

impl ConfigLocation {
    /// `s3://bucket/key`, or anything else as a file path.
    pub fn parse(text: &str) -> Result<ConfigLocation, Error> {
        let Some(rest) = text.strip_prefix("s3://") else { return Ok(ConfigLocation::File(PathBuf::from(text))) };
        match rest.split_once('/') {
            Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                Ok(ConfigLocation::S3 { bucket: bucket.to_string(), key: key.to_string() })
            }
            _ => Err(Error::Read { origin: text.to_string(), reason: "expected s3://bucket/key".into() }),
        }
    }
}

impl std::fmt::Display for ConfigLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigLocation::File(path) => write!(f, "{}", path.display()),
            ConfigLocation::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

/// A config loaded from S3 with the object version it came from.
#[derive(Debug, Clone)]
pub struct S3Config {
    /// The parsed config.
    pub config: Arc<Config>,
    /// The object's ETag.
    pub etag: String,
    /// The object's version id, when the bucket is versioned.
    pub version_id: Option<String>,
}

/// Configs fetched from S3, by bucket and key.
#[derive(Default)]
pub struct S3ConfigCache {
    entries: tokio::sync::Mutex<HashMap<(String, String), S3Config>>,
}

impl S3ConfigCache {
    /// The config at `bucket`/`key`: from the cache when the object's ETag is unchanged.
    /// Variables in it are expanded from this process's environment.
    pub async fn load(&self, s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<S3Config, Error> {
        let origin = format!("s3://{bucket}/{key}");
        let read = |reason: String| Error::Read { origin: origin.clone(), reason };
        let mut entries = self.entries.lock().await;
        let cache_key = (bucket.to_string(), key.to_string());
        if let Some(cached) = entries.get(&cache_key) {
            let head =
                s3.head_object().bucket(bucket).key(key).send().await.map_err(|e| read(crate::aws::describe(&e)))?;
            if head.e_tag() == Some(cached.etag.as_str()) {
                return Ok(cached.clone());
            }
        }
        let object =
            s3.get_object().bucket(bucket).key(key).send().await.map_err(|e| read(crate::aws::describe(&e)))?;
        let etag = object.e_tag().unwrap_or_default().to_string();
        let version_id = object.version_id().map(str::to_string);
        let bytes = object.body.collect().await.map_err(|e| read(e.to_string()))?.into_bytes();
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| read("the object is not UTF-8 text".into()))?;
        let config = Config::parse(&text, &origin, |name| std::env::var(name).ok())?;
        let loaded = S3Config { config: Arc::new(config), etag, version_id };
        entries.insert(cache_key, loaded.clone());
        Ok(loaded)
    }
}

/// An S3 client on the ambient AWS chain (path-style addressing when `AWS_S3_FORCE_PATH_STYLE`
/// is set, as S3-compatible stores and moto need).
pub async fn s3_client() -> aws_sdk_s3::Client {
    let shared = crate::aws::sdk_config(None, None).await;
    let path_style = std::env::var("AWS_S3_FORCE_PATH_STYLE").is_ok_and(|v| v == "true" || v == "1");
    let config = aws_sdk_s3::config::Builder::from(&shared).force_path_style(path_style).build();
    aws_sdk_s3::Client::from_conf(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_locations_and_files() {
        assert_eq!(
            ConfigLocation::parse("s3://configs/prod/ocync.yaml").unwrap(),
            ConfigLocation::S3 { bucket: "configs".into(), key: "prod/ocync.yaml".into() }
        );
        assert_eq!(ConfigLocation::parse("ocync.yaml").unwrap(), ConfigLocation::File("ocync.yaml".into()));
        let error = ConfigLocation::parse("s3://bucket-only").unwrap_err().to_string();
        assert!(error.contains("s3://bucket-only") && error.contains("expected s3://bucket/key"), "{error}");
    }
}
