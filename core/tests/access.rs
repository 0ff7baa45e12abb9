//! Roles from grants and ownership (`aptc_core::access`) on small policies.

mod common;

use aptc_core::access::*;
use aptc_core::ir::*;
use common::compile;

const SYSTEM_APT: &str = r#"namespace system

team platform_team
team web_team
team ops_team
user "root" {
    groups ["admins"]
}
user "pat" {
    team platform_team
}
user "wendy" {
    team web_team
}
user "carl" {}
user "olga" {
    team ops_team
}
grant domain_admin when "admins" in user.groups
grant consumer on platform when user.team == "web_team"
grant namespace_admin on system when user.team == "ops_team"
"#;

#[test]
fn roles_come_from_grants_and_ownership() {
    let p = compile(&[
        ("system.apt", SYSTEM_APT),
        ("platform.apt", "namespace platform owned_by platform_team\n"),
        ("web.apt", "namespace web owned_by web_team\n"),
    ]);
    let access = Access::new(&p);
    assert!(access.enabled());
    let role = |user: &str, ns: &str| access.role(&access.user(user).unwrap(), ns);
    assert_eq!(role("root", "platform"), Some(Role::DomainAdmin));
    assert_eq!(role("root", SYSTEM_NAMESPACE), Some(Role::DomainAdmin));
    assert_eq!(role("pat", "platform"), Some(Role::NamespaceAdmin));
    assert_eq!(role("pat", "web"), None);
    assert_eq!(role("wendy", "web"), Some(Role::NamespaceAdmin));
    assert_eq!(role("wendy", "platform"), Some(Role::Consumer));
    assert_eq!(role("carl", "web"), None);
    assert_eq!(role("olga", "web"), Some(Role::DomainAdmin), "administering system is domain admin");
    let wendy = access.user("Wendy").unwrap();
    assert!(access.may_manage(&wendy, "web"));
    assert!(!access.may_manage(&wendy, "platform"));
    assert!(access.may_manage_claims(&wendy, "platform"));
    assert!(access.may_consume(&wendy, "platform"));
    assert!(!access.may_manage(&wendy, SYSTEM_NAMESPACE));
    assert!(access.user("nobody").is_none());
}

#[test]
fn without_grants_everyone_may_do_everything() {
    let p = compile(&[("system.apt", "namespace system\n\nuser \"carl\" {}\n"), ("web.apt", "namespace web\n")]);
    let access = Access::new(&p);
    assert!(!access.enabled());
    let carl = access.user("carl").unwrap();
    assert!(access.may_manage(&carl, SYSTEM_NAMESPACE) && access.may_manage(&carl, "web"));
}
