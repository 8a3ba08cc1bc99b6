//! The `--s3-bucket` flag, shared by `earthcatalog` and `earthcatalog-worker`.

use crate::s3_settings::BucketSettings;
use crate::stores::Stores;
use clap::Args;

/// Per-bucket S3 settings (every binary that touches S3 takes them).
#[derive(Debug, Clone, Default, Args)]
pub struct S3BucketArgs {
    /// S3 settings for one bucket, overriding the AWS_* environment there; repeatable. Keys:
    /// endpoint=URL, region=R, allow_http=true, anonymous=true (unsigned, for public buckets),
    /// profile=P (that profile's keys instead of the default credentials). E.g.
    /// --s3-bucket its-live-data:anonymous=true --s3-bucket mirror:endpoint=http://minio:9000,allow_http=true.
    /// In the variable, separate entries with ';' or whitespace.
    #[arg(
        long = "s3-bucket",
        value_name = "BUCKET:KEY=VALUE,...",
        env = "EARTHCATALOG_S3_BUCKETS",
        global = true
    )]
    pub s3_buckets: Vec<BucketSettings>,
}

impl S3BucketArgs {
    /// Every entry, later ones overriding earlier ones for the same bucket.
    pub fn settings(&self) -> BucketSettings {
        BucketSettings::merged(self.s3_buckets.iter().cloned())
    }

    /// The process's one [`Stores`]: the environment's S3 settings overridden by these
    /// entries. Each binary builds it once, right after parsing its flags, and passes it down.
    pub fn stores(&self) -> Stores {
        let settings = self.settings();
        for (bucket, s) in settings.iter() {
            tracing::info!(bucket, settings = ?redacted(s), "S3 settings for bucket");
        }
        Stores::from_env(&settings)
    }
}

impl S3BucketArgs {
    /// Every entry as one `EARTHCATALOG_S3_BUCKETS` value (`BUCKET:key=value,...;...`), for
    /// child processes that must use the same settings.
    pub fn env_value(&self) -> String {
        let settings = self.settings();
        let entries: Vec<String> =
            settings.iter().map(|(bucket, s)| format!("{bucket}:{}", redacted(s))).collect();
        entries.join(";")
    }
}

/// The settings an entry can hold (it never holds keys), for the log.
fn redacted(s: &crate::stores::S3Settings) -> String {
    let mut parts = Vec::new();
    let mut add = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            parts.push(format!("{k}={v}"));
        }
    };
    add("endpoint", s.endpoint.clone());
    add("region", s.region.clone());
    add("allow_http", s.allow_http.map(|b| b.to_string()));
    add("anonymous", s.anonymous.map(|b| b.to_string()));
    add("profile", s.profile.clone());
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        s3: S3BucketArgs,
    }

    #[test]
    fn repeated_flags_are_merged_per_bucket() {
        let cli = Cli::try_parse_from([
            "x",
            "--s3-bucket",
            "its-live-data:anonymous=true",
            "--s3-bucket",
            "mirror:endpoint=http://b:9000,allow_http=true;other:region=eu-west-1",
        ])
        .unwrap();
        let s = cli.s3.settings();
        assert_eq!(s.get("its-live-data").unwrap().anonymous, Some(true));
        assert_eq!(s.get("mirror").unwrap().endpoint.as_deref(), Some("http://b:9000"));
        assert_eq!(s.get("other").unwrap().region.as_deref(), Some("eu-west-1"));
        let again: BucketSettings = cli.s3.env_value().parse().unwrap();
        assert_eq!(again.get("mirror").unwrap().endpoint.as_deref(), Some("http://b:9000"));
        assert_eq!(again.get("its-live-data").unwrap().anonymous, Some(true));
    }

    #[test]
    fn a_bad_entry_is_a_usage_error_naming_it() {
        let err = Cli::try_parse_from(["x", "--s3-bucket", "mirror:endpont=http://b"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let text = err.to_string();
        assert!(
            text.contains("'mirror:endpont=http://b'") && text.contains("unknown key 'endpont'"),
            "{text}"
        );
    }
}
