//! How aptc reaches the Kubernetes cluster a policy's `cluster` declares (docs/language.md §8): a
//! kubeconfig file and a context in it. Credentials stay in the kubeconfig; the policy only names
//! them. Both drivers of a cluster (Helm releases and server-side apply) use one connection.

use std::path::{Path, PathBuf};

use aptc_core::ir;

/// One cluster's kubeconfig and context.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Connection {
    /// `system.NAME` of the cluster.
    pub cluster: String,
    /// The kubeconfig file; `None`: the ambient one (`$KUBECONFIG`, else `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// The context; `None`: the kubeconfig's current context.
    pub context: Option<String>,
    /// Where the kubeconfig came from when it is no file of the user's, for people (`the Secret
    /// aptc-system/prod key kubeconfig`); `None`: the file says it.
    pub origin: Option<String>,
}

impl Connection {
    /// The connection a declared cluster asks for: its `kubeconfig` relative to the declaring
    /// file's directory (`~/` is the home directory of the user running aptc).
    pub fn for_cluster(key: &str, cluster: &ir::Cluster) -> Connection {
        let kubeconfig = cluster.kubeconfig.as_deref().map(|written| match written.strip_prefix("~/") {
            Some(rest) => home().join(rest),
            None => Path::new(&cluster.base_dir).join(written),
        });
        Connection { cluster: key.to_string(), kubeconfig, context: cluster.context.clone(), origin: None }
    }

    /// The connection for a cluster the policy does not declare (a unit recorded by an older
    /// policy): the ambient kubeconfig and its current context.
    pub fn ambient(key: &str) -> Connection {
        Connection { cluster: key.to_string(), kubeconfig: None, context: None, origin: None }
    }

    /// The kubeconfig file this connection reads: its own, else `$KUBECONFIG` (the first of its
    /// paths), else `~/.kube/config`.
    pub fn kubeconfig_path(&self) -> PathBuf {
        if let Some(path) = &self.kubeconfig {
            return path.clone();
        }
        std::env::var_os("KUBECONFIG")
            .filter(|v| !v.is_empty())
            .and_then(|v| std::env::split_paths(&v).next())
            .unwrap_or_else(|| home().join(".kube/config"))
    }

    /// Whether there is a kubeconfig to read at all (no kubeconfig: no cluster is configured).
    pub fn is_configured(&self) -> bool {
        self.kubeconfig_path().is_file()
    }

    /// For people: `system.prod (context prod-us-east in ~/.kube/config)`.
    pub fn describe(&self) -> String {
        let context = self.context.as_deref().map_or("current context".to_string(), |c| format!("context {c}"));
        match &self.origin {
            Some(origin) => format!("{} ({context} of {origin})", self.cluster),
            None => format!("{} ({context} in {})", self.cluster, self.kubeconfig_path().display()),
        }
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(kubeconfig: Option<&str>, context: Option<&str>) -> ir::Cluster {
        ir::Cluster {
            name: "prod".into(),
            context: context.map(Into::into),
            kubeconfig: kubeconfig.map(Into::into),
            credentials: None,
            namespace: None,
            labels: Default::default(),
            base_dir: "/policy/system".into(),
        }
    }

    #[test]
    fn kubeconfig_paths_are_relative_to_the_declaring_file() {
        let c = Connection::for_cluster("system.prod", &cluster(Some("../kube/prod.yaml"), Some("prod")));
        assert_eq!(c.kubeconfig_path(), PathBuf::from("/policy/system/../kube/prod.yaml"));
        assert_eq!(c.context.as_deref(), Some("prod"));
        let home = Connection::for_cluster("system.prod", &cluster(Some("~/.kube/prod"), None));
        assert_eq!(home.kubeconfig_path(), super::home().join(".kube/prod"));
    }

    #[test]
    fn descriptions_name_the_context_and_file() {
        let c = Connection::for_cluster("system.prod", &cluster(Some("/k/config"), Some("prod-us")));
        assert_eq!(c.describe(), "system.prod (context prod-us in /k/config)");
        assert!(!c.is_configured());
    }
}
