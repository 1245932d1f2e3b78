//! Where a config comes from: a file, or an S3 object (`s3://bucket/key`), and the one
//! [`Source`] every frontend loads it through (`sync`, `plan`, `validate`, `expand`, watch
//! mode's cycles). S3 configs are cached per bucket and key and fetched again only when the
//! object's ETag changes, so a warm Lambda container or a watch cycle pays one `HeadObject`
//! per load; the S3 client is built once per source, so its credentials and connections are
//! reused.

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
        let (text, etag, version_id) = fetch(s3, bucket, key).await?;
        let config = Config::parse(&text, &origin, |name| std::env::var(name).ok())?;
        let loaded = S3Config { config: Arc::new(config), etag, version_id };
        entries.insert(cache_key, loaded.clone());
        Ok(loaded)
    }
}

/// The text of `s3://bucket/key`, with the object's ETag and version id.
async fn fetch(s3: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<(String, String, Option<String>), Error> {
    let read = |reason: String| Error::Read { origin: format!("s3://{bucket}/{key}"), reason };
    let object = s3.get_object().bucket(bucket).key(key).send().await.map_err(|e| read(crate::aws::describe(&e)))?;
    let etag = object.e_tag().unwrap_or_default().to_string();
    let version_id = object.version_id().map(str::to_string);
    let bytes = object.body.collect().await.map_err(|e| read(e.to_string()))?.into_bytes();
    let text = String::from_utf8(bytes.to_vec()).map_err(|_| read("the object is not UTF-8 text".into()))?;
    Ok((text, etag, version_id))
}

/// A config location ready to be read, as often as a frontend needs: the CLI once, watch mode
/// every cycle, a warm Lambda container every invocation.
pub enum Source {
    /// A local file, read afresh each time.
    File(PathBuf),
    /// An S3 object, through one client and an ETag cache.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Object key.
        key: String,
        /// The client every load uses.
        client: aws_sdk_s3::Client,
        /// Parsed configs by bucket and key.
        cache: S3ConfigCache,
    },
}

/// A loaded config and, from S3, the object version it came from (the Lambda's fan-out
/// messages name it).
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The parsed config.
    pub config: Arc<Config>,
    /// The S3 object's version id, when the bucket is versioned.
    pub version_id: Option<String>,
}

impl Source {
    /// `text` as [`ConfigLocation::parse`] reads it.
    pub async fn open(text: &str) -> Result<Source, Error> {
        Ok(Source::at(ConfigLocation::parse(text)?).await)
    }

    /// `location`; an S3 location gets a client on the ambient AWS chain ([`s3_client`]).
    pub async fn at(location: ConfigLocation) -> Source {
        match location {
            ConfigLocation::File(path) => Source::File(path),
            s3 @ ConfigLocation::S3 { .. } => Source::with_client(s3, s3_client().await),
        }
    }

    /// `location`, with `client` for S3 (one the caller already holds).
    pub fn with_client(location: ConfigLocation, client: aws_sdk_s3::Client) -> Source {
        match location {
            ConfigLocation::File(path) => Source::File(path),
            ConfigLocation::S3 { bucket, key } => Source::S3 { bucket, key, client, cache: S3ConfigCache::default() },
        }
    }

    /// Where the config is read from.
    pub fn location(&self) -> ConfigLocation {
        match self {
            Source::File(path) => ConfigLocation::File(path.clone()),
            Source::S3 { bucket, key, .. } => ConfigLocation::S3 { bucket: bucket.clone(), key: key.clone() },
        }
    }

    /// The config, parsed and validated with variables expanded from this process's
    /// environment; from S3 through the cache.
    pub async fn load(&self) -> Result<Loaded, Error> {
        match self {
            Source::File(path) => Ok(Loaded { config: Arc::new(Config::load(path)?), version_id: None }),
            Source::S3 { bucket, key, client, cache } => {
                let loaded = cache.load(client, bucket, key).await?;
                Ok(Loaded { config: loaded.config, version_id: loaded.version_id })
            }
        }
    }

    /// The config's text as written, before expansion (`ocync expand` prints it expanded).
    pub async fn text(&self) -> Result<String, Error> {
        match self {
            Source::File(path) => std::fs::read_to_string(path)
                .map_err(|e| Error::Read { origin: path.display().to_string(), reason: e.to_string() }),
            Source::S3 { bucket, key, client, .. } => Ok(fetch(client, bucket, key).await?.0),
        }
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
