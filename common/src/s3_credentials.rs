//! Which credentials an S3 client uses, and building the client with them.
//!
//! The chain follows the AWS SDKs: unsigned when asked; static keys (`AWS_ACCESS_KEY_ID` …);
//! a profile named by `AWS_PROFILE` or per bucket; a web identity (IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE`
//! + `AWS_ROLE_ARN`); the `default` profile of the shared files; container credentials (ECS task
//! role: `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`; EKS Pod Identity:
//! `AWS_CONTAINER_CREDENTIALS_FULL_URI` + `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`); else the
//! instance role. The role credentials are fetched and refreshed by object_store itself.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{ClientConfigKey, RetryConfig};

use crate::s3_settings::{DEFAULT_MAX_RETRIES, DEFAULT_RETRY_TIMEOUT, S3Settings};

/// Region used when neither settings nor profile name one: ITS_LIVE's.
const FALLBACK_REGION: &str = "us-west-2";

/// Why an S3 client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A named profile is missing or unusable.
    #[error("AWS profile '{profile}' ({files}): {reason}")]
    Profile {
        /// Profile name.
        profile: String,
        /// The files looked in.
        files: String,
        /// What went wrong.
        reason: String,
    },
    /// A shared credentials or config file could not be read.
    #[error("cannot read AWS file {file}: {reason}")]
    File {
        /// The file.
        file: String,
        /// What went wrong.
        reason: String,
    },
    /// A container credentials setting object_store cannot honour.
    #[error("{0}")]
    Unsupported(String),
}

/// A secret that is never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a client's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialSource {
    /// Unsigned requests (public buckets).
    Anonymous,
    /// Keys given by settings or `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`.
    Static {
        /// Access key id.
        key_id: String,
        /// Secret key.
        secret: Secret,
        /// Session token.
        token: Option<Secret>,
    },
    /// Keys of a profile in the shared credentials or config file.
    Profile {
        /// Profile name.
        name: String,
        /// Access key id.
        key_id: String,
        /// Secret key.
        secret: Secret,
        /// Session token.
        token: Option<Secret>,
    },
    /// AssumeRoleWithWebIdentity (IRSA on EKS).
    WebIdentity {
        /// The projected token file.
        token_file: String,
        /// The role to assume.
        role_arn: String,
    },
    /// The ECS task role endpoint (`169.254.170.2` + relative URI).
    ContainerRelative {
        /// `AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`.
        uri: String,
    },
    /// A full container credentials URL with an authorization token file (EKS Pod Identity).
    ContainerFull {
        /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
        uri: String,
        /// `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`.
        token_file: String,
    },
    /// The EC2 instance role (IMDSv2).
    Instance,
}

impl CredentialSource {
    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            CredentialSource::Anonymous => "anonymous",
            CredentialSource::Static { .. } => "static keys",
            CredentialSource::Profile { .. } => "profile",
            CredentialSource::WebIdentity { .. } => "web identity",
            CredentialSource::ContainerRelative { .. } => "ECS task role",
            CredentialSource::ContainerFull { .. } => "container credentials (EKS Pod Identity)",
            CredentialSource::Instance => "instance role",
        }
    }
}

/// A snapshot of the environment variables that matter for S3 (`AWS_*`, `HOME`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsEnvironment {
    vars: BTreeMap<String, String>,
}

impl AwsEnvironment {
    /// The process environment's `AWS_*` variables and `HOME`.
    pub fn from_env() -> Self {
        Self::from_vars(std::env::vars())
    }

    /// An environment of the given variables (only `AWS_*` and `HOME` are kept).
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let vars = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, v): &(String, String)| {
                !v.is_empty() && (k.starts_with("AWS_") || k == "HOME")
            })
            .collect();
        AwsEnvironment { vars }
    }

    /// Every kept variable.
    pub fn vars(&self) -> &BTreeMap<String, String> {
        &self.vars
    }

    fn var(&self, k: &str) -> Option<&str> {
        self.vars.get(k).map(String::as_str)
    }

    fn shared_file(&self, var: &str, default: &str) -> Option<PathBuf> {
        match self.var(var) {
            Some(f) => Some(PathBuf::from(f)),
            None => self.var("HOME").map(|h| PathBuf::from(h).join(".aws").join(default)),
        }
    }

    /// A profile's section from the shared credentials file and the config file, merged
    /// (credentials file first). `None` when neither file has it.
    fn profile(&self, name: &str) -> Result<Option<BTreeMap<String, String>>, CredentialError> {
        let mut found: Option<BTreeMap<String, String>> = None;
        let config_section =
            if name == "default" { "default".to_string() } else { format!("profile {name}") };
        let files = [
            (self.shared_file("AWS_SHARED_CREDENTIALS_FILE", "credentials"), name.to_string()),
            (self.shared_file("AWS_CONFIG_FILE", "config"), config_section),
        ];
        for (file, section) in files {
            let Some(file) = file.filter(|f| f.is_file()) else { continue };
            let ini = ini::Ini::load_from_file(&file).map_err(|e| CredentialError::File {
                file: file.display().to_string(),
                reason: e.to_string(),
            })?;
            if let Some(props) = ini.section(Some(section.as_str())) {
                let entry = found.get_or_insert_with(BTreeMap::new);
                for (k, v) in props.iter() {
                    entry.entry(k.to_string()).or_insert_with(|| v.to_string());
                }
            }
        }
        Ok(found)
    }

    fn files_description(&self) -> String {
        let show = |f: Option<PathBuf>| f.map(|p| p.display().to_string()).unwrap_or("-".into());
        format!(
            "{}, {}",
            show(self.shared_file("AWS_SHARED_CREDENTIALS_FILE", "credentials")),
            show(self.shared_file("AWS_CONFIG_FILE", "config"))
        )
    }
}

/// How a bucket's client is set up: its credentials and region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientPlan {
    /// Where credentials come from.
    pub credentials: CredentialSource,
    /// The region the client signs for.
    pub region: String,
}

/// Keys taken from a profile section, if it has both halves.
fn profile_keys(
    name: &str,
    props: &BTreeMap<String, String>,
) -> Option<Result<CredentialSource, String>> {
    match (props.get("aws_access_key_id"), props.get("aws_secret_access_key")) {
        (Some(k), Some(s)) => Some(Ok(CredentialSource::Profile {
            name: name.to_string(),
            key_id: k.clone(),
            secret: Secret(s.clone()),
            token: props.get("aws_session_token").cloned().map(Secret),
        })),
        (None, None) => None,
        _ => Some(Err("has only one of aws_access_key_id and aws_secret_access_key".into())),
    }
}

/// Decides credentials and region for `settings` in `env` (see the module docs for the order).
pub fn plan(settings: &S3Settings, env: &AwsEnvironment) -> Result<ClientPlan, CredentialError> {
    let explicit = settings.profile.clone();
    let name = explicit.clone().unwrap_or_else(|| "default".into());
    let profile = env.profile(&name)?;
    let profile_err = |reason: String| CredentialError::Profile {
        profile: name.clone(),
        files: env.files_description(),
        reason,
    };
    if explicit.is_some() && profile.is_none() {
        return Err(profile_err("no such profile".into()));
    }
    let region = settings
        .region
        .clone()
        .or_else(|| profile.as_ref().and_then(|p| p.get("region").cloned()))
        .unwrap_or_else(|| FALLBACK_REGION.into());
    let from_profile = profile.as_ref().and_then(|p| profile_keys(&name, p));
    let credentials = if settings.anonymous == Some(true) {
        CredentialSource::Anonymous
    } else if let (Some(k), Some(s)) = (&settings.access_key_id, &settings.secret_access_key) {
        CredentialSource::Static {
            key_id: k.clone(),
            secret: Secret(s.clone()),
            token: settings.session_token.clone().map(Secret),
        }
    } else if explicit.is_some() {
        match from_profile {
            Some(Ok(c)) => c,
            Some(Err(reason)) => return Err(profile_err(reason)),
            None => {
                return Err(profile_err(
                    "has no aws_access_key_id/aws_secret_access_key (role, SSO and \
                     credential_process profiles are not supported)"
                        .into(),
                ));
            }
        }
    } else if let (Some(token_file), Some(role_arn)) =
        (env.var("AWS_WEB_IDENTITY_TOKEN_FILE"), env.var("AWS_ROLE_ARN"))
    {
        CredentialSource::WebIdentity {
            token_file: token_file.to_string(),
            role_arn: role_arn.to_string(),
        }
    } else if let Some(Ok(c)) = from_profile {
        c
    } else if let Some(uri) = env.var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") {
        CredentialSource::ContainerRelative { uri: uri.to_string() }
    } else if let Some(uri) = env.var("AWS_CONTAINER_CREDENTIALS_FULL_URI") {
        let Some(token_file) = env.var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") else {
            return Err(CredentialError::Unsupported(format!(
                "AWS_CONTAINER_CREDENTIALS_FULL_URI={uri} needs \
                 AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (a token given inline in \
                 AWS_CONTAINER_AUTHORIZATION_TOKEN is not supported: write it to a file)"
            )));
        };
        CredentialSource::ContainerFull { uri: uri.to_string(), token_file: token_file.to_string() }
    } else {
        CredentialSource::Instance
    };
    Ok(ClientPlan { credentials, region })
}

/// Whether an `AWS_*` setting is decided here (credentials, endpoint, region, HTTP) rather than
/// passed through to object_store as is.
fn decided_here(key: &AmazonS3ConfigKey) -> bool {
    use AmazonS3ConfigKey as K;
    matches!(
        key,
        K::AccessKeyId
            | K::SecretAccessKey
            | K::Token
            | K::Region
            | K::DefaultRegion
            | K::Bucket
            | K::Endpoint
            | K::S3Endpoint
            | K::VirtualHostedStyleRequest
            | K::SkipSignature
            | K::WebIdentityTokenFile
            | K::RoleArn
            | K::ContainerCredentialsRelativeUri
            | K::ContainerCredentialsFullUri
            | K::ContainerAuthorizationTokenFile
            | K::Client(ClientConfigKey::AllowHttp)
    )
}

/// Builds the client of `bucket` from `settings` and `env`; returns it with the plan used.
pub fn build_client(
    bucket: &str,
    settings: &S3Settings,
    env: &AwsEnvironment,
) -> Result<(Arc<dyn ObjectStore>, ClientPlan), BuildError> {
    let plan = plan(settings, env).map_err(BuildError::Credentials)?;
    let mut b = AmazonS3Builder::new();
    // Other object_store options (proxy, timeouts, STS endpoint, SSE, requester pays, IMDS)
    // pass through from the environment as object_store would read them.
    for (k, v) in env.vars() {
        if let Ok(key) = k.to_ascii_lowercase().parse::<AmazonS3ConfigKey>()
            && !decided_here(&key)
        {
            b = b.with_config(key, v);
        }
    }
    b = b
        .with_bucket_name(bucket)
        .with_region(&plan.region)
        .with_virtual_hosted_style_request(false)
        .with_retry(RetryConfig {
            max_retries: settings.max_retries.unwrap_or(DEFAULT_MAX_RETRIES),
            retry_timeout: settings.retry_timeout.unwrap_or(DEFAULT_RETRY_TIMEOUT),
            ..Default::default()
        });
    if let Some(endpoint) = &settings.endpoint {
        b = b.with_endpoint(endpoint);
    }
    if let Some(allow) = settings.allow_http {
        b = b.with_allow_http(allow);
    }
    b = match &plan.credentials {
        CredentialSource::Anonymous => b.with_skip_signature(true),
        CredentialSource::Static { key_id, secret, token }
        | CredentialSource::Profile { key_id, secret, token, .. } => {
            let b = b.with_access_key_id(key_id).with_secret_access_key(&secret.0);
            match token {
                Some(t) => b.with_token(&t.0),
                None => b,
            }
        }
        CredentialSource::WebIdentity { token_file, role_arn } => b
            .with_config(AmazonS3ConfigKey::WebIdentityTokenFile, token_file)
            .with_config(AmazonS3ConfigKey::RoleArn, role_arn),
        CredentialSource::ContainerRelative { uri } => {
            b.with_config(AmazonS3ConfigKey::ContainerCredentialsRelativeUri, uri)
        }
        CredentialSource::ContainerFull { uri, token_file } => b
            .with_config(AmazonS3ConfigKey::ContainerCredentialsFullUri, uri)
            .with_config(AmazonS3ConfigKey::ContainerAuthorizationTokenFile, token_file),
        CredentialSource::Instance => b,
    };
    let store = b.build().map_err(BuildError::Client)?;
    tracing::debug!(bucket, credentials = plan.credentials.name(), region = %plan.region, "S3 client");
    Ok((Arc::new(store), plan))
}

/// Why [`build_client`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// No usable credentials.
    #[error(transparent)]
    Credentials(CredentialError),
    /// object_store refused the configuration (bad endpoint, …).
    #[error(transparent)]
    Client(object_store::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> AwsEnvironment {
        AwsEnvironment::from_vars(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn files(creds: &str, config: &str) -> (tempfile::TempDir, Vec<(String, String)>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("credentials"), creds).unwrap();
        std::fs::write(dir.path().join("config"), config).unwrap();
        let vars = vec![
            (
                "AWS_SHARED_CREDENTIALS_FILE".to_string(),
                dir.path().join("credentials").display().to_string(),
            ),
            ("AWS_CONFIG_FILE".to_string(), dir.path().join("config").display().to_string()),
        ];
        (dir, vars)
    }

    fn source(settings: &S3Settings, env: &AwsEnvironment) -> CredentialSource {
        plan(settings, env).unwrap().credentials
    }

    const IRSA: [(&str, &str); 2] = [
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
        ("AWS_ROLE_ARN", "arn:aws:iam::1:role/r"),
    ];

    #[test]
    fn irsa_is_used_when_no_keys_are_given() {
        let got = source(&S3Settings::default(), &env(&IRSA));
        assert_eq!(
            got,
            CredentialSource::WebIdentity {
                token_file: "/var/run/token".into(),
                role_arn: "arn:aws:iam::1:role/r".into()
            }
        );
    }

    #[test]
    fn static_keys_win_over_roles_and_unsigned_wins_over_everything() {
        let keys = S3Settings {
            access_key_id: Some("K".into()),
            secret_access_key: Some("S".into()),
            ..Default::default()
        };
        assert!(
            matches!(source(&keys, &env(&IRSA)), CredentialSource::Static { key_id, .. } if key_id == "K")
        );
        let anon = S3Settings { anonymous: Some(true), ..keys };
        assert_eq!(source(&anon, &env(&IRSA)), CredentialSource::Anonymous);
    }

    #[test]
    fn ecs_task_roles_and_eks_pod_identity_are_used_before_the_instance_role() {
        let relative = [("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/abc")];
        assert_eq!(
            source(&S3Settings::default(), &env(&relative)),
            CredentialSource::ContainerRelative { uri: "/v2/credentials/abc".into() }
        );
        let full = [
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://169.254.170.23/v1/credentials"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "/var/run/eks-token"),
        ];
        assert!(matches!(
            source(&S3Settings::default(), &env(&full)),
            CredentialSource::ContainerFull { token_file, .. } if token_file == "/var/run/eks-token"
        ));
        assert_eq!(source(&S3Settings::default(), &env(&[])), CredentialSource::Instance);
    }

    #[test]
    fn a_full_container_uri_with_an_inline_token_is_refused_with_the_fix() {
        let full = [
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/creds"),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "abc"),
        ];
        let err = plan(&S3Settings::default(), &env(&full)).unwrap_err().to_string();
        assert!(err.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"), "{err}");
    }

    #[test]
    fn a_named_profile_gives_keys_and_its_region_from_the_config_file() {
        let (_dir, vars) = files(
            "[default]\naws_access_key_id = D\naws_secret_access_key = d\n[writer]\naws_access_key_id = W\naws_secret_access_key = w\naws_session_token = t\n",
            "[default]\nregion = eu-central-1\n[profile writer]\nregion = ap-south-1\n",
        );
        let e = AwsEnvironment::from_vars(
            vars.into_iter().chain(IRSA.map(|(k, v)| (k.into(), v.into()))),
        );
        let named = S3Settings { profile: Some("writer".into()), ..Default::default() };
        let p = plan(&named, &e).unwrap();
        assert_eq!(p.region, "ap-south-1");
        assert!(
            matches!(&p.credentials, CredentialSource::Profile { name, key_id, token: Some(_), .. } if name == "writer" && key_id == "W")
        );
        // Without a named profile IRSA comes before the default profile, whose region still counts.
        let p = plan(&S3Settings::default(), &e).unwrap();
        assert_eq!(p.region, "eu-central-1");
        assert!(matches!(p.credentials, CredentialSource::WebIdentity { .. }));
        // A region in the settings (AWS_REGION, per bucket) wins over the profile's.
        let r = S3Settings { region: Some("us-east-1".into()), ..named };
        assert_eq!(plan(&r, &e).unwrap().region, "us-east-1");
    }

    #[test]
    fn the_default_profile_comes_before_container_roles_and_keys_may_sit_in_the_config_file() {
        let (_dir, vars) =
            files("", "[default]\naws_access_key_id = C\naws_secret_access_key = c\n");
        let mut vars = vars;
        vars.push(("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI".into(), "/v2/x".into()));
        let got = source(&S3Settings::default(), &AwsEnvironment::from_vars(vars));
        assert!(matches!(got, CredentialSource::Profile { key_id, .. } if key_id == "C"));
    }

    #[test]
    fn a_missing_or_keyless_named_profile_is_an_error_naming_it() {
        let (_dir, vars) =
            files("[a]\naws_access_key_id = A\n", "[profile sso]\nsso_start_url = x\n");
        let e = AwsEnvironment::from_vars(vars);
        let named = |p: &str| S3Settings { profile: Some(p.into()), ..Default::default() };
        let err = plan(&named("nope"), &e).unwrap_err().to_string();
        assert!(
            err.starts_with("AWS profile 'nope' (") && err.ends_with("no such profile"),
            "{err}"
        );
        let err = plan(&named("a"), &e).unwrap_err().to_string();
        assert!(err.contains("only one of aws_access_key_id"), "{err}");
        let err = plan(&named("sso"), &e).unwrap_err().to_string();
        assert!(err.contains("SSO"), "{err}");
    }

    #[test]
    fn the_region_falls_back_to_us_west_2() {
        assert_eq!(plan(&S3Settings::default(), &env(&[])).unwrap().region, "us-west-2");
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let keys = S3Settings {
            access_key_id: Some("K".into()),
            secret_access_key: Some("SUPERSECRET".into()),
            ..Default::default()
        };
        let shown = format!("{:?}", plan(&keys, &env(&[])).unwrap());
        assert!(!shown.contains("SUPERSECRET"), "{shown}");
    }
}
