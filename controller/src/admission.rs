//! The admission webhook's decision on a bundle, as a function of the review and the policy in
//! use: the bundle must be well formed, its files must check with everyone else's, and the
//! requester (`request.userInfo.username`) must be allowed, by the roles of the policy in use, to
//! make every change it brings (docs/language.md §11.3, `aptc_core::changes::refusals`: the check
//! `aptc check --as` and deploys make). So a team cannot declare objects of another team's
//! namespace or grant itself roles: the roles come from the policy before the change.

use std::path::Path;

use serde_json::{Value, json};
use thiserror::Error;

use crate::crd::{PolicyBundle, kube_name};
use crate::git::Sources;
use crate::policy::{self, Archives};

/// The most error lines a refusal quotes (the rest are counted).
const QUOTED: usize = 10;

/// A review that cannot be answered at all (the server answers 400).
#[derive(Debug, Error)]
pub enum ReviewError {
    #[error("not an AdmissionReview of admission.k8s.io/v1 with a request uid: {0}")]
    Malformed(String),
}

/// The decision on one review.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Refused, and why (what the requester reads).
    Denied(String),
}

/// Answers an AdmissionReview (v1) of a PolicyBundle: the AdmissionReview to send back.
/// `current` is the policy in use (each namespace's version in use); `work` is where bundles are
/// unpacked to be checked; `sources` makes the archive of a bundle whose files are a Git commit.
pub fn review(body: &[u8], current: &Archives, work: &Path, sources: &Sources) -> Result<Value, ReviewError> {
    let review: Value = serde_json::from_slice(body).map_err(|e| ReviewError::Malformed(e.to_string()))?;
    if review["apiVersion"] != "admission.k8s.io/v1" || review["kind"] != "AdmissionReview" {
        return Err(ReviewError::Malformed(format!("apiVersion {} kind {}", review["apiVersion"], review["kind"])));
    }
    let request = &review["request"];
    let Some(uid) = request["uid"].as_str() else { return Err(ReviewError::Malformed("no request.uid".into())) };
    let decision = decide(request, current, work, sources);
    let response = match decision {
        Decision::Allowed => json!({ "uid": uid, "allowed": true }),
        Decision::Denied(message) => json!({
            "uid": uid,
            "allowed": false,
            "status": { "code": 403, "reason": "Forbidden", "message": message }
        }),
    };
    Ok(json!({ "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response }))
}

/// The decision on a review's `request`. A bundle whose files are a Git commit is fetched and
/// checked as its archive would be: what the commit holds is what is checked.
pub fn decide(request: &Value, current: &Archives, work: &Path, sources: &Sources) -> Decision {
    let Some(user) = request["userInfo"]["username"].as_str() else {
        return Decision::Denied("the request names no user".into());
    };
    let bundle: PolicyBundle = match serde_json::from_value(request["object"].clone()) {
        Ok(bundle) => bundle,
        Err(error) => return Decision::Denied(format!("not a PolicyBundle: {error}")),
    };
    let namespace = bundle.spec.namespace.clone();
    let expected = kube_name(&namespace);
    if bundle.metadata.name.is_none() || bundle.metadata.name != expected {
        return Decision::Denied(match expected {
            Some(name) => format!("the bundle of namespace `{namespace}` must be named `{name}`"),
            None => format!("namespace `{namespace}` has no Kubernetes name"),
        });
    }
    if bundle.spec.git.is_none() && crate::bundle::digest(&bundle.spec.archive) != bundle.spec.digest {
        return Decision::Denied("spec.digest is not the sha256 of spec.archive (push it with `aptc push`)".into());
    }
    let archive = match sources.archive_fresh(&bundle.spec) {
        Ok(archive) => archive,
        Err(error) => return Decision::Denied(format!("the bundle of namespace `{namespace}`: {error}")),
    };
    let base = match policy::check(current, work) {
        Ok(base) => base,
        Err(error) => return Decision::Denied(format!("the controller cannot check bundles now: {error}")),
    };
    let mut next = current.clone();
    next.insert(namespace.clone(), archive);
    let checked = match policy::check(&next, work) {
        Ok(checked) => checked,
        Err(error) => return Decision::Denied(format!("the controller cannot check bundles now: {error}")),
    };
    // Errors the policy in use does not have already: this bundle's, or others' it breaks.
    let known: Vec<&String> = base.problems.values().flatten().collect();
    let new: Vec<&String> = checked.problems.values().flatten().filter(|p| !known.contains(p)).collect();
    if !new.is_empty() {
        return Decision::Denied(quote(&format!("the bundle of namespace `{namespace}` does not check"), &new));
    }
    let (Some(before), Some(after)) = (&base.program, &checked.program) else {
        // No policy in use yet (the first push), or one with errors of its own: there are no
        // roles to check against, as with access control off.
        return Decision::Allowed;
    };
    let refusals = aptc_core::changes::refusals(before, after, user);
    if refusals.is_empty() {
        return Decision::Allowed;
    }
    let lines: Vec<String> = refusals.iter().map(|r| format!("user `{user}` {r}")).collect();
    Decision::Denied(quote(
        &format!(
            "the policy in use does not let `{user}` make these changes (roles come from the policy before the change)"
        ),
        &lines.iter().collect::<Vec<_>>(),
    ))
}

/// `headline:` and the first [`QUOTED`] lines, then how many more.
fn quote(headline: &str, lines: &[&String]) -> String {
    let mut out = format!("{headline}:");
    for line in lines.iter().take(QUOTED) {
        out.push_str("\n  ");
        out.push_str(line);
    }
    if lines.len() > QUOTED {
        out.push_str(&format!("\n  … and {} more", lines.len() - QUOTED));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::Bundle;
    use crate::policy::tests::{SYSTEM, WEB, archives};

    fn in_use() -> Archives {
        archives(&[("system", &[("system.apt", SYSTEM)]), ("web", &[("web.apt", WEB)])])
    }

    /// A review of the bundle of `namespace` with `files`, requested by `user`.
    fn review_of(user: &str, namespace: &str, files: &[(&str, &str)]) -> Vec<u8> {
        let files = files.iter().map(|(p, t)| (p.to_string(), t.as_bytes().to_vec())).collect();
        let bundle = Bundle { namespace: namespace.into(), files }.resource().unwrap();
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "operation": "UPDATE",
                "userInfo": { "username": user, "groups": ["system:authenticated"] },
                "object": bundle
            }
        }))
        .unwrap()
    }

    fn sources(work: &tempfile::TempDir) -> Sources {
        Sources::new(&work.path().join("git"))
    }

    fn answer(body: &[u8]) -> Value {
        let work = tempfile::tempdir().unwrap();
        review(body, &in_use(), work.path(), &sources(&work)).unwrap()
    }

    #[test]
    fn a_team_changing_its_own_namespace_is_allowed() {
        let changed = WEB.replace("context all", "context everyone");
        let answer = answer(&review_of("ada", "web", &[("web.apt", &changed)]));
        assert_eq!(answer["response"], json!({ "uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": true }));
    }

    #[test]
    fn another_team_is_refused_with_the_policys_reason() {
        let changed = WEB.replace("context all", "context everyone");
        let answer = answer(&review_of("eve", "web", &[("web.apt", &changed)]));
        let response = &answer["response"];
        assert_eq!(response["allowed"], false);
        assert_eq!(response["status"]["code"], 403);
        let message = response["status"]["message"].as_str().unwrap();
        assert!(message.contains("user `eve` may not"), "{message}");
        assert!(message.contains("namespace `web` needs namespace_admin (their role there: consumer)"), "{message}");
    }

    #[test]
    fn a_team_cannot_grant_itself_a_role() {
        let grab = format!("{SYSTEM}grant domain_admin when user.team == \"web_team\"\n");
        let message = answer(&review_of("ada", "system", &[("system.apt", &grab)]))["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(message.contains("user `ada` may not"), "{message}");
        assert!(message.contains("namespace `system` needs"), "{message}");
        // An administrator may.
        let answer = answer(&review_of("max", "system", &[("system.apt", &grab)]));
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
    }

    #[test]
    fn a_bundle_declaring_another_namespace_is_refused() {
        let sneaky = "namespace system\ngrant domain_admin when user.name == \"ada\"\n";
        let answer = answer(&review_of("ada", "web", &[("web.apt", WEB), ("x.apt", sneaky)]));
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("web/x.apt: the file declares namespace `system`"), "{message}");
    }

    #[test]
    fn a_bundle_with_errors_is_refused_with_them() {
        let broken = "namespace web owned_by web_team\ncontract site { context all { use nothing } }\n";
        let answer = answer(&review_of("ada", "web", &[("web.apt", broken)]));
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(message.starts_with("the bundle of namespace `web` does not check:\n  web/web.apt:2:"), "{message}");
    }

    #[test]
    fn an_unknown_user_is_refused() {
        let answer = answer(&review_of("mallory", "web", &[("web.apt", WEB)]));
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("`mallory` is not a user of the policy"), "{message}");
    }

    #[test]
    fn the_first_bundle_is_allowed_as_access_control_is_off() {
        let work = tempfile::tempdir().unwrap();
        let alone = SYSTEM.replace("grant consumer on web\n", "");
        let answer = review(
            &review_of("anyone", "system", &[("system.apt", &alone)]),
            &Archives::new(),
            work.path(),
            &sources(&work),
        )
        .unwrap();
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        // Still, it must check on its own.
        let answer = review(
            &review_of("anyone", "system", &[("system.apt", SYSTEM)]),
            &Archives::new(),
            work.path(),
            &sources(&work),
        )
        .unwrap();
        assert_eq!(answer["response"]["allowed"], false, "{answer}");
    }

    #[test]
    fn malformed_reviews() {
        let work = tempfile::tempdir().unwrap();
        for body in [
            &b"not json"[..],
            br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview"}"#,
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}"#,
        ] {
            assert!(
                review(body, &in_use(), work.path(), &sources(&work)).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        // A request with a uid but a hostile object is answered, denied.
        let hostile = json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": { "uid": "u", "userInfo": { "username": "ada" }, "object": { "spec": { "namespace": "web\n---" } } }
        });
        let answer = review(&serde_json::to_vec(&hostile).unwrap(), &in_use(), work.path(), &sources(&work)).unwrap();
        assert_eq!(answer["response"]["allowed"], false);
        assert!(answer["response"]["status"]["message"].as_str().unwrap().starts_with("not a PolicyBundle"));
        let mut wrong_name: Value = serde_json::from_slice(&review_of("ada", "web", &[("web.apt", WEB)])).unwrap();
        wrong_name["request"]["object"]["metadata"]["name"] = json!("system");
        let answer =
            review(&serde_json::to_vec(&wrong_name).unwrap(), &in_use(), work.path(), &sources(&work)).unwrap();
        assert_eq!(answer["response"]["status"]["message"], "the bundle of namespace `web` must be named `web`");
        let mut tampered: Value = serde_json::from_slice(&review_of("ada", "web", &[("web.apt", WEB)])).unwrap();
        tampered["request"]["object"]["spec"]["digest"] = json!("sha256:00");
        let answer = review(&serde_json::to_vec(&tampered).unwrap(), &in_use(), work.path(), &sources(&work)).unwrap();
        assert!(answer["response"]["status"]["message"].as_str().unwrap().contains("spec.digest"));
    }

    /// A review of `spec` (a Git source) by `user`.
    fn review_of_git(user: &str, spec: crate::crd::PolicyBundleSpec) -> Vec<u8> {
        let bundle = PolicyBundle::new(&kube_name(&spec.namespace).unwrap(), spec);
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": { "uid": "u", "userInfo": { "username": user }, "object": bundle }
        }))
        .unwrap()
    }

    #[test]
    fn a_git_bundle_is_fetched_and_checked_as_its_archive_would_be() {
        use crate::git::tests::{free_port, git, repository, serve, spec};
        let base = tempfile::tempdir().unwrap();
        let (repo, _) = repository(base.path(), "policy");
        std::fs::write(repo.join("policy/web/web.apt"), WEB.replace("context all", "context everyone")).unwrap();
        git(&repo, &["commit", "--quiet", "-am", "everyone"]);
        let commit = git(&repo, &["rev-parse", "HEAD"]);
        let daemon = serve(base.path());
        let url = format!("git://127.0.0.1:{}/policy", daemon.port);
        let collected = crate::bundle::collect(&[repo.join("policy")]).unwrap();
        let digest = crate::bundle::digest(&collected[1].pack().unwrap());
        let work = tempfile::tempdir().unwrap();
        let sources = sources(&work);
        let decide = |user: &str, spec| review(&review_of_git(user, spec), &in_use(), work.path(), &sources).unwrap();
        let web = |revision: &str, url: &str| spec("web", url, revision, "policy", &digest);

        let answer = decide("ada", web(&commit, &url));
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        // The same check as for an archive: another team may not change web's namespace.
        let answer = decide("eve", web(&commit, &url));
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("user `eve` may not"), "{message}");
        // A branch is refused: the bundle's content could change without a write the webhook sees.
        let answer = decide("ada", web("main", &url));
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains("`main` is not a full commit id"), "{message}");
        let missing = "0123456789abcdef0123456789abcdef01234567";
        let answer = decide("ada", web(missing, &url));
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("has no commit {missing}")), "{message}");
        let nobody = format!("git://127.0.0.1:{}/policy", free_port());
        let answer = decide("ada", web(&commit, &nobody));
        let message = answer["response"]["status"]["message"].as_str().unwrap();
        assert!(message.starts_with(&format!("the bundle of namespace `web`: cannot fetch {nobody}")), "{message}");
    }
}
