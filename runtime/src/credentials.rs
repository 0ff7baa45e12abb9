//! Clusters whose kubeconfig is no file of the deploying user's (docs/language.md §8.1):
//! `kubeconfig secret "NAME" [key "KEY"]` (a kubeconfig kept in a Kubernetes Secret) and
//! `kubeconfig in_cluster` (the home cluster itself). Both are found through the [`Home`]: the
//! cluster and namespace aptc calls its own. For `aptc controller run` that is the control cluster
//! and the controller's namespace; for a deploy from a laptop, the current context of the ambient
//! kubeconfig and that context's namespace (else, in a pod without a kubeconfig, the pod's service
//! account and namespace).
//!
//! [`Credentials::connect`] turns such a cluster into a plain [`Connection`]: the Secret's
//! kubeconfig (checked to be one) is written into a private directory (0700, the file 0600,
//! removed with the driver and, if aptc is killed, by the next run's sweep), since Helm reads
//! kubeconfigs from files only; the home cluster is its own connection, or in a pod a kubeconfig
//! written (as data, by serde) that names the service account's token and CA files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aptc_core::ir;
use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::connection::Connection;

/// How long reading a Secret may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The service account's files in a pod (the same paths every Kubernetes client reads).
const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The cluster and namespace aptc calls its own: where the Secrets of `kubeconfig secret` are
/// read and what `kubeconfig in_cluster` reaches.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Home {
    /// A kubeconfig file; `None`: the ambient one (`$KUBECONFIG`, else `~/.kube/config`), else
    /// (none, and no context named) the in-cluster service account.
    pub kubeconfig: Option<PathBuf>,
    /// A context of it; `None`: its current context.
    pub context: Option<String>,
    /// The namespace of the Secrets; `None`: the context's namespace (else `default`), or in a pod
    /// its service account's.
    pub namespace: Option<String>,
}

/// Why a cluster's credentials could not be had. Every message names the cluster and, for a
/// Secret, the Secret and its namespace, and never holds anything the Secret holds.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The home cluster (where the Secret is) cannot be used or reached.
    #[error("cluster {cluster}: cannot reach the home cluster ({home}) to read its credentials: {reason}")]
    Home { cluster: String, home: String, reason: String },
    /// There is no such Secret.
    #[error(
        "cluster {cluster}: there is no Secret `{name}` in namespace `{namespace}` of the home cluster ({home}) to hold \
its kubeconfig; create it with `kubectl -n {namespace} create secret generic {name} --from-file={key}=PATH`"
    )]
    NoSecret { cluster: String, home: String, namespace: String, name: String, key: String },
    /// The Secret has no such key.
    #[error(
        "cluster {cluster}: the Secret `{namespace}/{name}` has no key `{key}` (its keys: {}); name the key with \
`kubeconfig secret \"{name}\" key \"KEY\"`",
        if keys.is_empty() { "none".to_string() } else { keys.join(", ") }
    )]
    NoKey { cluster: String, namespace: String, name: String, key: String, keys: Vec<String> },
    /// The declaration names no possible Secret or key.
    #[error(
        "cluster {cluster}: `kubeconfig secret {name:?} key {key:?}` names no possible Secret key (a Secret's name is \
lower-case letters, digits, `-` and `.`, at most 253; a key is letters, digits, `-`, `_` and `.`)"
    )]
    BadName { cluster: String, name: String, key: String },
    /// The key holds no kubeconfig, or not the declared context.
    #[error(
        "cluster {cluster}: the key `{key}` of the Secret `{namespace}/{name}` is not a usable kubeconfig: {reason}"
    )]
    NotKubeconfig { cluster: String, namespace: String, name: String, key: String, reason: String },
    /// The API refused or failed to give the Secret (e.g. RBAC: `get` on it is needed).
    #[error("cluster {cluster}: reading the Secret `{namespace}/{name}` on the home cluster ({home}): {reason}")]
    Read { cluster: String, home: String, namespace: String, name: String, reason: String },
    /// The kubeconfig could not be kept for Helm.
    #[error("cluster {cluster}: writing its kubeconfig into {}: {source}", path.display())]
    Write {
        cluster: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl CredentialsError {
    /// Whether trying again may succeed: the home cluster did not answer, or the Secret is not
    /// there yet (someone may create it); a Secret that holds no kubeconfig stays wrong.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            CredentialsError::Home { .. }
                | CredentialsError::NoSecret { .. }
                | CredentialsError::Read { .. }
                | CredentialsError::Write { .. }
        )
    }
}

impl Home {
    /// For people: `the current context of ~/.kube/config, namespace from it`.
    pub fn describe(&self) -> String {
        let context = self.context.as_deref().map_or("the current context".to_string(), |c| format!("context {c}"));
        let file = match &self.kubeconfig {
            Some(path) => path.display().to_string(),
            None => {
                let ambient = Connection::ambient("home").kubeconfig_path();
                if self.context.is_none() && !ambient.is_file() {
                    return "the in-cluster service account".into();
                }
                ambient.display().to_string()
            }
        };
        format!("{context} of {file}")
    }

    /// Whether there is a home to ask at all: a kubeconfig file, or a pod's service account.
    pub fn is_configured(&self) -> bool {
        let connection = self.connection();
        connection.is_configured()
            || (self.uses_service_account() && std::env::var_os("KUBERNETES_SERVICE_HOST").is_some())
    }

    fn connection(&self) -> Connection {
        Connection {
            cluster: "home".into(),
            kubeconfig: self.kubeconfig.clone(),
            context: self.context.clone(),
            origin: None,
        }
    }

    /// No kubeconfig named, none ambient, no context: the pod's service account.
    fn uses_service_account(&self) -> bool {
        self.kubeconfig.is_none() && self.context.is_none() && !self.connection().kubeconfig_path().is_file()
    }

    /// The home's client configuration and the namespace of its Secrets.
    async fn config(&self) -> Result<(Config, String), String> {
        let config = if self.uses_service_account() {
            Config::incluster().map_err(|e| {
                format!("no kubeconfig at {} and not in a pod ({e})", self.connection().kubeconfig_path().display())
            })?
        } else {
            let path = self.connection().kubeconfig_path();
            let kubeconfig = Kubeconfig::read_from(&path)
                .map_err(|e| format!("reading the kubeconfig {}: {}", path.display(), crate::k8s::ops::chain(&e)))?;
            let options = KubeConfigOptions { context: self.context.clone(), ..KubeConfigOptions::default() };
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| format!("the kubeconfig {}: {}", path.display(), crate::k8s::ops::chain(&e)))?
        };
        let namespace = self.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        Ok((config, namespace))
    }
}

/// Why a key of a Secret in the home namespace could not be read; its callers say whose Secret it
/// is (a cluster's kubeconfig, a `secret_k8s` value). Never holds the Secret's contents.
#[derive(Debug)]
pub(crate) enum SecretReadError {
    /// The home cluster cannot be used or reached.
    Home(String),
    /// There is no such Secret in `namespace`.
    NoSecret { namespace: String },
    /// The Secret has no such key; these are its keys.
    NoKey { namespace: String, keys: Vec<String> },
    /// The API refused or failed to give the Secret (e.g. RBAC).
    Read { namespace: String, reason: String },
}

impl Home {
    /// The bytes of `entry` in the Secret `name` of the home namespace, and that namespace.
    pub(crate) fn read_secret(&self, name: &str, entry: &str) -> Result<(Vec<u8>, String), SecretReadError> {
        let (mut data, namespace) = self.read_secret_data(name)?;
        let keys: Vec<String> = data.keys().cloned().collect();
        match data.remove(entry) {
            Some(contents) => Ok((contents, namespace)),
            None => Err(SecretReadError::NoKey { namespace, keys }),
        }
    }

    /// Every key of the Secret `name` in the home namespace (for credentials of several parts,
    /// such as a Git source's), or why not, in words that name the Secret and never its contents.
    pub fn secret_data(&self, name: &str) -> Result<BTreeMap<String, Vec<u8>>, String> {
        if !is_secret_name(name) {
            return Err(format!("`{name}` cannot be a Secret's name"));
        }
        let home = self.describe();
        self.read_secret_data(name).map(|(data, _)| data).map_err(|error| match error {
            SecretReadError::Home(reason) => format!("cannot reach the home cluster ({home}): {reason}"),
            SecretReadError::NoSecret { namespace } => {
                format!("there is no Secret `{name}` in namespace `{namespace}` of the home cluster ({home})")
            }
            SecretReadError::NoKey { namespace, .. } => format!("the Secret `{namespace}/{name}` lacks a key"),
            SecretReadError::Read { namespace, reason } => {
                format!("reading the Secret `{namespace}/{name}` on the home cluster ({home}): {reason}")
            }
        })
    }

    /// Every key of the Secret `name` in the home namespace, and that namespace, read now on a
    /// small runtime of its own (the callers are synchronous).
    fn read_secret_data(&self, name: &str) -> Result<(BTreeMap<String, Vec<u8>>, String), SecretReadError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| SecretReadError::Home(format!("starting a Kubernetes client: {e}")))?;
        runtime.block_on(async {
            let (config, namespace) = self.config().await.map_err(SecretReadError::Home)?;
            let client = Client::try_from(config).map_err(|e| SecretReadError::Home(crate::k8s::ops::chain(&e)))?;
            let api: Api<Secret> = Api::namespaced(client, &namespace);
            let secret = match tokio::time::timeout(READ_TIMEOUT, api.get_opt(name)).await {
                Err(_) => {
                    let reason = format!("no answer within {} s", READ_TIMEOUT.as_secs());
                    return Err(SecretReadError::Read { namespace, reason });
                }
                Ok(Err(error)) => {
                    return Err(SecretReadError::Read { namespace, reason: crate::k8s::ops::reason(&error) });
                }
                Ok(Ok(None)) => return Err(SecretReadError::NoSecret { namespace }),
                Ok(Ok(Some(secret))) => secret,
            };
            let mut data: BTreeMap<String, Vec<u8>> =
                secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            // `stringData` is write-only in a real API server; a double may keep it.
            for (k, v) in secret.string_data.unwrap_or_default() {
                data.entry(k).or_insert_with(|| v.into_bytes());
            }
            Ok((data, namespace))
        })
    }
}

/// How the driver reaches the clusters of `kubeconfig secret` and `kubeconfig in_cluster`.
pub struct Credentials {
    home: Home,
    /// Where Secrets' kubeconfigs are kept while the driver lives (made on first use).
    dir: std::sync::Mutex<Option<crate::private_dir::PrivateDir>>,
}

/// A cluster's connection made from its credentials, and the kubeconfig's contents it was made
/// from (so a rotated Secret is noticed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connected {
    pub connection: Connection,
    pub contents: Option<Vec<u8>>,
}

impl Credentials {
    pub fn new(home: Home) -> Credentials {
        Credentials { home, dir: std::sync::Mutex::new(None) }
    }

    pub fn home(&self) -> &Home {
        &self.home
    }

    /// The connection of the cluster `key`, declared with `context` and `credentials`: the
    /// Secret read now.
    pub fn connect(
        &self,
        key: &str,
        context: Option<&str>,
        credentials: &ir::Credentials,
    ) -> Result<Connected, CredentialsError> {
        match credentials {
            ir::Credentials::InCluster => self.in_cluster(key),
            ir::Credentials::Secret { name, key: entry } => {
                if !is_secret_name(name) || !is_secret_key(entry) {
                    return Err(CredentialsError::BadName {
                        cluster: key.to_string(),
                        name: name.clone(),
                        key: entry.clone(),
                    });
                }
                let (contents, namespace) = self.read_secret(key, name, entry)?;
                let not_kubeconfig = |reason: String| CredentialsError::NotKubeconfig {
                    cluster: key.to_string(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    key: entry.clone(),
                    reason,
                };
                // Checked here, so the error names the Secret; the parser's own message may quote
                // the text, so only its kind is said.
                let text = std::str::from_utf8(&contents).map_err(|_| not_kubeconfig("it is not UTF-8 text".into()))?;
                let parsed = Kubeconfig::from_yaml(text)
                    .map_err(|_| not_kubeconfig("it does not parse as a kubeconfig (YAML)".into()))?;
                if let Some(context) = context
                    && !parsed.contexts.iter().any(|c| c.name == context)
                {
                    return Err(not_kubeconfig(format!("it has no context `{context}` (the cluster's `context`)")));
                }
                if context.is_none() && parsed.current_context.is_none() {
                    return Err(not_kubeconfig("it has no current-context, and the cluster names no `context`".into()));
                }
                let path = self.keep(key, &contents)?;
                let connection = Connection {
                    cluster: key.to_string(),
                    kubeconfig: Some(path),
                    context: context.map(str::to_string),
                    origin: Some(format!("the Secret {namespace}/{name} key {entry}")),
                };
                Ok(Connected { connection, contents: Some(contents) })
            }
        }
    }

    /// The home cluster as a connection of its own: its kubeconfig and context, or in a pod a
    /// kubeconfig naming the service account's token and CA files.
    fn in_cluster(&self, key: &str) -> Result<Connected, CredentialsError> {
        if !self.home.uses_service_account() {
            let connection = Connection {
                cluster: key.to_string(),
                kubeconfig: self.home.kubeconfig.clone(),
                context: self.home.context.clone(),
                origin: Some(format!("in_cluster: {}", self.home.describe())),
            };
            return Ok(Connected { connection, contents: None });
        }
        let config = Config::incluster().map_err(|e| CredentialsError::Home {
            cluster: key.to_string(),
            home: self.home.describe(),
            reason: format!(
                "`kubeconfig in_cluster` needs a kubeconfig or a pod's service account, and there is neither ({e})"
            ),
        })?;
        let contents = service_account_kubeconfig(&config.cluster_url.to_string(), Path::new(SERVICE_ACCOUNT));
        let path = self.keep(key, &contents)?;
        let connection = Connection {
            cluster: key.to_string(),
            kubeconfig: Some(path),
            context: None,
            origin: Some("in_cluster: the pod's service account".into()),
        };
        Ok(Connected { connection, contents: Some(contents) })
    }

    /// The bytes of `entry` in the Secret `name` of the home namespace, and that namespace.
    fn read_secret(&self, cluster: &str, name: &str, entry: &str) -> Result<(Vec<u8>, String), CredentialsError> {
        let home = self.home.describe();
        self.home.read_secret(name, entry).map_err(|error| match error {
            SecretReadError::Home(reason) => CredentialsError::Home { cluster: cluster.to_string(), home, reason },
            SecretReadError::Read { namespace, reason } => {
                CredentialsError::Read { cluster: cluster.to_string(), home, namespace, name: name.to_string(), reason }
            }
            SecretReadError::NoSecret { namespace } => CredentialsError::NoSecret {
                cluster: cluster.to_string(),
                home,
                namespace,
                name: name.to_string(),
                key: entry.to_string(),
            },
            SecretReadError::NoKey { namespace, keys } => CredentialsError::NoKey {
                cluster: cluster.to_string(),
                namespace,
                name: name.to_string(),
                key: entry.to_string(),
                keys,
            },
        })
    }

    /// Writes `contents` as the kubeconfig of `cluster` (0600, in the private directory).
    fn keep(&self, cluster: &str, contents: &[u8]) -> Result<PathBuf, CredentialsError> {
        let mut slot = self.dir.lock().unwrap_or_else(|p| p.into_inner());
        let write_error =
            |path: PathBuf, source| CredentialsError::Write { cluster: cluster.to_string(), path, source };
        let dir = match &mut *slot {
            Some(dir) => dir,
            empty => empty.insert(
                crate::private_dir::PrivateDir::create("kubeconfig")
                    .map_err(|e| write_error(std::env::temp_dir(), e))?,
            ),
        };
        // `system.NAME` is a file name (identifiers have no `/`).
        let path = dir.path().join(format!("{cluster}.kubeconfig"));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&path).map_err(|e| write_error(path.clone(), e))?;
        std::io::Write::write_all(&mut file, contents).map_err(|e| write_error(path.clone(), e))?;
        Ok(path)
    }
}

/// A Kubernetes object name (DNS subdomain): lower-case alphanumerics, `-` and `.`, starting and
/// ending with an alphanumeric, at most 253 characters.
pub(crate) fn is_secret_name(name: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    name.len() <= 253
        && edge(name.chars().next())
        && edge(name.chars().last())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
}

/// A key of a Secret's data: alphanumerics, `-`, `_` and `.`, at most 253 characters.
pub(crate) fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

/// A kubeconfig (JSON, which is YAML) reaching `server` with the service account's token and CA
/// files under `account`, for Helm, which reads kubeconfigs from files only.
fn service_account_kubeconfig(server: &str, account: &Path) -> Vec<u8> {
    use kube::config::{AuthInfo, Cluster, Context, NamedAuthInfo, NamedCluster, NamedContext};
    const NAME: &str = "in-cluster";
    let kubeconfig = Kubeconfig {
        clusters: vec![NamedCluster {
            name: NAME.into(),
            cluster: Some(Cluster {
                server: Some(server.to_string()),
                certificate_authority: Some(account.join("ca.crt").display().to_string()),
                ..Cluster::default()
            }),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: NAME.into(),
            auth_info: Some(AuthInfo {
                token_file: Some(account.join("token").display().to_string()),
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: NAME.into(),
            context: Some(Context { cluster: NAME.into(), user: Some(NAME.into()), ..Context::default() }),
            ..NamedContext::default()
        }],
        current_context: Some(NAME.into()),
        ..Kubeconfig::default()
    };
    serde_json::to_vec_pretty(&kubeconfig).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_account_kubeconfig_names_its_files_and_parses() {
        let bytes = service_account_kubeconfig("https://10.0.0.1:443/", Path::new("/sa"));
        let parsed = Kubeconfig::from_yaml(std::str::from_utf8(&bytes).unwrap()).unwrap();
        assert_eq!(parsed.current_context.as_deref(), Some("in-cluster"));
        let cluster = parsed.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://10.0.0.1:443/"));
        assert_eq!(cluster.certificate_authority.as_deref(), Some("/sa/ca.crt"));
        assert_eq!(parsed.auth_infos[0].auth_info.as_ref().unwrap().token_file.as_deref(), Some("/sa/token"));
    }

    #[test]
    fn names_that_cannot_be_secrets_are_refused_before_any_request() {
        assert!(is_secret_name("prod-kubeconfig") && is_secret_name("a.b") && is_secret_key("eu.yaml"));
        assert!(!is_secret_name("") && !is_secret_name("Prod") && !is_secret_name("a/b") && !is_secret_name("-a"));
        assert!(!is_secret_key("") && !is_secret_key("a/b"));
        let credentials = Credentials::new(Home::default());
        let bad = ir::Credentials::Secret { name: "../x".into(), key: "kubeconfig".into() };
        let error = credentials.connect("system.prod", None, &bad).unwrap_err();
        assert!(matches!(error, CredentialsError::BadName { .. }), "{error:?}");
        assert!(error.to_string().contains("system.prod") && !error.is_transient(), "{error}");
    }

    #[test]
    fn a_home_without_a_kubeconfig_says_which_it_would_use() {
        let home =
            Home { kubeconfig: Some("/nowhere/config".into()), context: Some("control".into()), namespace: None };
        assert_eq!(home.describe(), "context control of /nowhere/config");
        assert!(!home.is_configured());
        let credentials = Credentials::new(home);
        let secret = ir::Credentials::Secret { name: "prod".into(), key: "kubeconfig".into() };
        let error = credentials.connect("system.prod", None, &secret).unwrap_err();
        assert!(matches!(error, CredentialsError::Home { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains("system.prod") && message.contains("/nowhere/config"), "{message}");
        assert!(error.is_transient());
    }

    /// A served API-server double holding `secrets` (name → key → contents) in `aptc-system`,
    /// and the home reaching it.
    fn served(secrets: &[(&str, &str, &[u8])]) -> (aptc_kube_fake::FakeApi, tempfile::TempDir, Home) {
        let fake = aptc_kube_fake::FakeApi::new();
        for (name, key, contents) in secrets {
            fake.insert(
                &format!("/api/v1/namespaces/aptc-system/secrets/{name}"),
                serde_json::json!({
                    "apiVersion": "v1", "kind": "Secret",
                    "metadata": { "name": name, "namespace": "aptc-system" },
                    "data": { *key: serde_json::to_value(k8s_openapi::ByteString(contents.to_vec())).unwrap() }
                }),
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("home");
        fake.serve_to(&kubeconfig, "control").unwrap();
        let home = Home { kubeconfig: Some(kubeconfig), context: None, namespace: Some("aptc-system".into()) };
        (fake, dir, home)
    }

    #[test]
    fn a_secret_s_kubeconfig_is_read_checked_and_kept_privately() {
        const TARGET: &[u8] = b"apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: https://t.example\n\
users:\n- name: u\n  user:\n    token: sekret-token-1\ncontexts:\n- name: prod\n  context:\n    cluster: t\n    user: u\n";
        let (_fake, _dir, home) = served(&[
            ("prod", "kubeconfig", TARGET),
            ("other-key", "config", TARGET),
            ("garbage", "kubeconfig", b"sekret-token-2: [unclosed"),
        ]);
        let credentials = Credentials::new(home);
        let secret = |name: &str| ir::Credentials::Secret { name: name.into(), key: "kubeconfig".into() };

        let connected = credentials.connect("system.prod", Some("prod"), &secret("prod")).unwrap();
        let path = connected.connection.kubeconfig.clone().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), TARGET);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(path.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        assert_eq!(connected.connection.context.as_deref(), Some("prod"));
        let described = connected.connection.describe();
        assert_eq!(described, "system.prod (context prod of the Secret aptc-system/prod key kubeconfig)");

        let errors = [
            credentials.connect("system.a", None, &secret("absent")).unwrap_err(),
            credentials.connect("system.b", None, &secret("other-key")).unwrap_err(),
            credentials.connect("system.c", None, &secret("garbage")).unwrap_err(),
            credentials.connect("system.d", Some("elsewhere"), &secret("prod")).unwrap_err(),
            // No context named and the kubeconfig has no current one.
            credentials.connect("system.e", None, &secret("prod")).unwrap_err(),
        ];
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(matches!(errors[0], CredentialsError::NoSecret { .. }) && errors[0].is_transient(), "{messages:?}");
        assert!(messages[0].contains("no Secret `absent` in namespace `aptc-system`"), "{}", messages[0]);
        assert!(matches!(&errors[1], CredentialsError::NoKey { keys, .. } if keys == &["config"]), "{messages:?}");
        assert!(messages[1].contains("has no key `kubeconfig` (its keys: config)"), "{}", messages[1]);
        assert!(matches!(errors[2], CredentialsError::NotKubeconfig { .. }) && !errors[2].is_transient());
        assert!(messages[3].contains("no context `elsewhere`"), "{}", messages[3]);
        assert!(messages[4].contains("no current-context"), "{}", messages[4]);
        for (message, cluster) in messages.iter().zip(["system.a", "system.b", "system.c", "system.d", "system.e"]) {
            assert!(message.starts_with(&format!("cluster {cluster}: ")), "{message}");
            assert!(!message.contains("sekret-token"), "never the Secret's contents: {message}");
        }
    }

    #[test]
    fn in_cluster_is_the_home_s_own_connection() {
        let (_fake, _dir, home) = served(&[]);
        let kubeconfig = home.kubeconfig.clone();
        let connected = Credentials::new(home).connect("system.home", None, &ir::Credentials::InCluster).unwrap();
        assert_eq!(connected.connection.kubeconfig, kubeconfig);
        assert_eq!(connected.connection.context, None);
        assert!(connected.contents.is_none(), "nothing written");
    }
}
