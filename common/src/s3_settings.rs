//! S3 client settings: the environment's defaults, per-bucket overrides written as
//! `BUCKET:key=value,...` (`--s3-bucket`, `EARTHCATALOG_S3_BUCKETS`), which each binary passes to
//! the one [`crate::stores::Stores`] it builds ([`crate::stores::Stores::from_env`]).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

/// Client-level retries of one request (5xx, 429, 408, connection and body errors): 1 + 3
/// requests over about a second with object_store's 100 ms doubling backoff. The client also
/// writes data files, catalogs and locks, where a failure costs a task attempt, so it retries;
/// item fetches add one slower round on top (see [`crate::fetch::RetryPolicy`]).
pub const DEFAULT_MAX_RETRIES: usize = 3;

/// Client-level retries stop after this long even if [`DEFAULT_MAX_RETRIES`] is not reached.
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// The keys a per-bucket entry may set.
pub const BUCKET_KEYS: &[&str] = &["endpoint", "region", "allow_http", "anonymous", "profile"];

/// Why a per-bucket settings entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("S3 bucket entry '{entry}': {reason}")]
pub struct BucketEntryError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: String,
}

/// S3 client settings. `None` means "as the environment says".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct S3Settings {
    /// Endpoint URL (moto, MinIO, another region's endpoint).
    pub endpoint: Option<String>,
    /// Region (default: the profile's, else `us-west-2`, where ITS_LIVE lives).
    pub region: Option<String>,
    /// Allow plain `http://` endpoints.
    pub allow_http: Option<bool>,
    /// Send unsigned requests (public buckets).
    pub anonymous: Option<bool>,
    /// Static access key id.
    pub access_key_id: Option<String>,
    /// Static secret key.
    pub secret_access_key: Option<String>,
    /// Session token for temporary credentials.
    pub session_token: Option<String>,
    /// Profile in the shared credentials/config files.
    pub profile: Option<String>,
    /// Client-level retries of one request; default [`DEFAULT_MAX_RETRIES`].
    pub max_retries: Option<usize>,
    /// Client-level retries stop after this long; default [`DEFAULT_RETRY_TIMEOUT`].
    pub retry_timeout: Option<Duration>,
}

/// Reads a boolean the way AWS tools do (`true`/`1`/`yes`, case-insensitive).
fn truthy(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

impl S3Settings {
    /// Settings from the process environment (see [`S3Settings::from_vars`]).
    pub fn from_env() -> Self {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Settings from `AWS_*` variables (endpoint, region, keys, `AWS_ALLOW_HTTP`,
    /// `AWS_SKIP_SIGNATURE`, `AWS_PROFILE`) and `EARTHCATALOG_S3_ANONYMOUS`.
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Self {
        let var = |k: &str| vars.get(k).filter(|v| !v.is_empty()).cloned();
        let flag = |k: &str| var(k).and_then(|v| truthy(&v));
        S3Settings {
            endpoint: var("AWS_ENDPOINT_URL_S3")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .or_else(|| var("AWS_ENDPOINT")),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            allow_http: flag("AWS_ALLOW_HTTP"),
            anonymous: flag("EARTHCATALOG_S3_ANONYMOUS").or_else(|| flag("AWS_SKIP_SIGNATURE")),
            access_key_id: var("AWS_ACCESS_KEY_ID"),
            secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
            session_token: var("AWS_SESSION_TOKEN"),
            profile: var("AWS_PROFILE"),
            max_retries: None,
            retry_timeout: None,
        }
    }

    /// These settings with every value set in `other` taking precedence. A `profile` in
    /// `other` replaces inherited static keys (and unsigned access) with that profile's
    /// credentials: naming a profile for a bucket means "use these credentials there".
    pub fn overridden_by(&self, other: &S3Settings) -> S3Settings {
        fn pick<T: Clone>(a: &Option<T>, b: &Option<T>) -> Option<T> {
            b.clone().or_else(|| a.clone())
        }
        let own_credentials = other.profile.is_some();
        let keys = |a: &Option<String>, b: &Option<String>| {
            if own_credentials { b.clone() } else { pick(a, b) }
        };
        let anonymous = match (own_credentials, other.anonymous) {
            (_, Some(a)) => Some(a),
            (true, None) => Some(false),
            (false, None) => self.anonymous,
        };
        S3Settings {
            endpoint: pick(&self.endpoint, &other.endpoint),
            region: pick(&self.region, &other.region),
            allow_http: pick(&self.allow_http, &other.allow_http),
            anonymous,
            access_key_id: keys(&self.access_key_id, &other.access_key_id),
            secret_access_key: keys(&self.secret_access_key, &other.secret_access_key),
            session_token: keys(&self.session_token, &other.session_token),
            profile: pick(&self.profile, &other.profile),
            max_retries: pick(&self.max_retries, &other.max_retries),
            retry_timeout: pick(&self.retry_timeout, &other.retry_timeout),
        }
    }
}

/// S3 settings for named buckets: one or more `BUCKET:key=value,...` entries separated by `;`
/// or whitespace. Keys are [`BUCKET_KEYS`]; a later entry for the same bucket overrides the
/// values it sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketSettings {
    by_bucket: BTreeMap<String, S3Settings>,
}

impl BucketSettings {
    /// The settings of every entry of every `parts`, later ones overriding earlier ones.
    pub fn merged(parts: impl IntoIterator<Item = BucketSettings>) -> BucketSettings {
        let mut out = BucketSettings::default();
        for part in parts {
            for (bucket, settings) in part.by_bucket {
                out.insert(bucket, settings);
            }
        }
        out
    }

    /// The overrides for one bucket, if any.
    pub fn get(&self, bucket: &str) -> Option<&S3Settings> {
        self.by_bucket.get(bucket)
    }

    /// Every (bucket, overrides) pair, by bucket name.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &S3Settings)> {
        self.by_bucket.iter()
    }

    /// Whether no bucket has overrides.
    pub fn is_empty(&self) -> bool {
        self.by_bucket.is_empty()
    }

    fn insert(&mut self, bucket: String, settings: S3Settings) {
        let merged = match self.by_bucket.get(&bucket) {
            Some(old) => old.overridden_by(&settings),
            None => settings,
        };
        self.by_bucket.insert(bucket, merged);
    }
}

impl FromStr for BucketSettings {
    type Err = BucketEntryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = BucketSettings::default();
        for entry in s.split(|c: char| c == ';' || c.is_whitespace()).filter(|e| !e.is_empty()) {
            let (bucket, settings) = parse_entry(entry)?;
            out.insert(bucket, settings);
        }
        Ok(out)
    }
}

/// Parses one `BUCKET:key=value,...` entry.
fn parse_entry(entry: &str) -> Result<(String, S3Settings), BucketEntryError> {
    let bad = |reason: String| BucketEntryError { entry: entry.to_string(), reason };
    let Some((bucket, pairs)) = entry.split_once(':') else {
        return Err(bad("expected BUCKET:key=value,... (no ':' after the bucket name)".into()));
    };
    if bucket.is_empty() || bucket.contains('/') {
        return Err(bad(format!("'{bucket}' is not a bucket name")));
    }
    let mut settings = S3Settings::default();
    let mut seen = Vec::new();
    for pair in pairs.split(',').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(bad(format!("'{pair}' is not key=value")));
        };
        if seen.contains(&key) {
            return Err(bad(format!("'{key}' is given twice")));
        }
        seen.push(key);
        let text = || Some(value.to_string()).filter(|v| !v.is_empty());
        let boolean = || {
            truthy(value)
                .map(Some)
                .ok_or_else(|| bad(format!("{key}={value}: expected true or false")))
        };
        match key {
            "endpoint" => settings.endpoint = text(),
            "region" => settings.region = text(),
            "profile" => settings.profile = text(),
            "allow_http" => settings.allow_http = boolean()?,
            "anonymous" => settings.anonymous = boolean()?,
            other => {
                return Err(bad(format!(
                    "unknown key '{other}' (known: {})",
                    BUCKET_KEYS.join(", ")
                )));
            }
        }
    }
    if seen.is_empty() {
        return Err(bad("no settings after the bucket name".into()));
    }
    Ok((bucket.to_string(), settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<BucketSettings, String> {
        s.parse::<BucketSettings>().map_err(|e| e.to_string())
    }

    #[test]
    fn entries_set_endpoint_region_http_anonymous_and_profile_per_bucket() {
        let b = parse(
            "its-live-data:anonymous=true,region=us-west-2; mirror:endpoint=http://127.0.0.1:9000,allow_http=true\n  mine:profile=writer",
        )
        .unwrap();
        let itslive = b.get("its-live-data").unwrap();
        assert_eq!(itslive.anonymous, Some(true));
        assert_eq!(itslive.region.as_deref(), Some("us-west-2"));
        let mirror = b.get("mirror").unwrap();
        assert_eq!(mirror.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(mirror.allow_http, Some(true));
        assert_eq!(b.get("mine").unwrap().profile.as_deref(), Some("writer"));
        assert!(b.get("other").is_none());
    }

    #[test]
    fn a_later_entry_for_the_same_bucket_overrides_only_what_it_sets() {
        let b = BucketSettings::merged([
            parse("m:endpoint=http://a,region=r1").unwrap(),
            parse("m:region=r2").unwrap(),
        ]);
        let m = b.get("m").unwrap();
        assert_eq!((m.endpoint.as_deref(), m.region.as_deref()), (Some("http://a"), Some("r2")));
    }

    #[test]
    fn bad_entries_are_refused_naming_the_entry_and_why() {
        assert_eq!(
            parse("ok:region=x;mirror:endpont=http://b").unwrap_err(),
            "S3 bucket entry 'mirror:endpont=http://b': unknown key 'endpont' \
             (known: endpoint, region, allow_http, anonymous, profile)"
        );
        assert_eq!(
            parse("mirror").unwrap_err(),
            "S3 bucket entry 'mirror': expected BUCKET:key=value,... (no ':' after the bucket name)"
        );
        assert_eq!(
            parse("m:anonymous=maybe").unwrap_err(),
            "S3 bucket entry 'm:anonymous=maybe': anonymous=maybe: expected true or false"
        );
        assert!(parse("m:region").unwrap_err().contains("'region' is not key=value"));
        assert!(parse(":region=x").unwrap_err().contains("is not a bucket name"));
        assert!(parse("m:").unwrap_err().contains("no settings"));
        assert!(parse("m:region=a,region=b").unwrap_err().contains("'region' is given twice"));
    }

    #[test]
    fn a_bucket_profile_replaces_inherited_keys_and_unsigned_access() {
        let defaults = S3Settings {
            access_key_id: Some("ENVKEY".into()),
            secret_access_key: Some("envsecret".into()),
            session_token: Some("envtoken".into()),
            anonymous: Some(true),
            region: Some("us-east-1".into()),
            ..Default::default()
        };
        let s = defaults.overridden_by(&parse("b:profile=p").unwrap().get("b").unwrap().clone());
        assert_eq!(s.access_key_id, None);
        assert_eq!(s.session_token, None);
        assert_eq!(s.anonymous, Some(false));
        assert_eq!(s.profile.as_deref(), Some("p"));
        assert_eq!(s.region.as_deref(), Some("us-east-1"));
        let s =
            defaults.overridden_by(&S3Settings { region: Some("x".into()), ..Default::default() });
        assert_eq!(s.access_key_id.as_deref(), Some("ENVKEY"));
        assert_eq!(s.anonymous, Some(true));
    }

    #[test]
    fn environment_variables_give_the_defaults() {
        let vars: BTreeMap<String, String> = [
            ("AWS_ENDPOINT_URL", "http://e"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_ALLOW_HTTP", "TRUE"),
            ("AWS_SKIP_SIGNATURE", "1"),
            ("AWS_PROFILE", "p"),
            ("AWS_ACCESS_KEY_ID", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let s = S3Settings::from_vars(&vars);
        assert_eq!(s.endpoint.as_deref(), Some("http://e"));
        assert_eq!(s.region.as_deref(), Some("eu-west-1"));
        assert_eq!((s.allow_http, s.anonymous), (Some(true), Some(true)));
        assert_eq!(s.profile.as_deref(), Some("p"));
        assert_eq!(s.access_key_id, None);
    }
}
