//! A generator of large synthetic policies, for benchmarks and load tests.
//!
//! The output is a realistic, well-formed workspace: one file per namespace (labels, services whose
//! components are charts or uses of the previous namespace's contracts, contracts with several
//! contexts, rules, claims) plus shared files for clusters, users and grants. It is deterministic:
//! the same configuration and seed always give the same bytes, so measurements are comparable.
#![allow(dead_code)] // each benchmark, example and test uses its own part of the generator

use std::fmt::Write;

/// How big the generated policy is.
#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub namespaces: usize,
    pub services_per_namespace: usize,
    pub contracts_per_namespace: usize,
    pub rules_per_namespace: usize,
    pub claims_per_namespace: usize,
    /// Exactly this many claims in all, spread over the namespaces (overrides the above).
    pub total_claims: Option<usize>,
    pub clusters: usize,
    pub users: usize,
    pub seed: u64,
}

/// One generated file, with a path relative to the workspace root.
pub struct SynthFile {
    pub path: String,
    pub text: String,
}

/// Lines per namespace (its file and its share of users) with the proportions of
/// [`SynthConfig::for_lines`], measured.
const LINES_PER_NAMESPACE: usize = 379;

impl SynthConfig {
    /// A configuration whose output has roughly `lines` lines, in realistic proportions.
    pub fn for_lines(lines: usize, seed: u64) -> SynthConfig {
        let namespaces = lines.div_ceil(LINES_PER_NAMESPACE).max(1);
        SynthConfig {
            namespaces,
            services_per_namespace: 6,
            contracts_per_namespace: 6,
            rules_per_namespace: 4,
            claims_per_namespace: 8,
            total_claims: None,
            clusters: 4,
            users: (namespaces * 2).clamp(4, 2_000),
            seed,
        }
    }
}

/// A xorshift64* generator: tiny, deterministic and good enough for picking names.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const ENVS: [&str; 3] = ["dev", "stage", "prod"];
const CHARTS: [&str; 6] = ["redis", "postgresql", "kafka", "nginx", "memcached", "rabbitmq"];
const REGIONS: [&str; 4] = ["us-east", "us-west", "eu-central", "ap-south"];
pub const TEAMS: [&str; 5] = ["web", "mobile", "data", "ml", "infra"];

/// Generates the whole workspace.
pub fn generate(config: &SynthConfig) -> Vec<SynthFile> {
    let mut rng = Rng::new(config.seed);
    let mut files = vec![system_file(config, &mut rng)];
    for ns in 0..config.namespaces {
        files.push(SynthFile { path: format!("ns{ns}/policy.apt"), text: namespace_file(config, ns, &mut rng) });
    }
    files
}

/// The size of the generated workspace in bytes, for throughput figures.
pub fn total_bytes(files: &[SynthFile]) -> usize {
    files.iter().map(|f| f.text.len()).sum()
}

fn system_file(config: &SynthConfig, rng: &mut Rng) -> SynthFile {
    let mut out = String::new();
    out.push_str("/// Shared definitions: clusters, users, teams and access.\nnamespace system owned_by infra\n\n");
    out.push_str("label env: \"dev\" | \"stage\" | \"prod\" = \"dev\"\nlabel region: string = \"us-east\"\nlabel stage: \"dev\" | \"stage\" | \"prod\" = \"dev\"\nlabel org: string\nlabel level: int = 1\n\n");
    for c in 0..config.clusters {
        let region = REGIONS[c % REGIONS.len()];
        let _ = writeln!(
            out,
            "/// Cluster {c}.\ncluster c{c} {{\n    context \"kind-c{c}\"\n    namespace \"apps\"\n    labels {{ region = \"{region}\", stage = \"{}\" }}\n}}\n",
            rng.pick(&ENVS)
        );
    }
    for team in TEAMS {
        let _ = writeln!(out, "team {team} {{\n    labels {{ org = \"{team}-org\" }}\n}}");
    }
    out.push('\n');
    for u in 0..config.users {
        let team = rng.pick(&TEAMS);
        let _ = writeln!(
            out,
            "user \"user{u}@example.com\" {{\n    team {team}\n    groups [\"dev\"{}]\n    labels {{ level = {} }}\n}}",
            if rng.below(10) == 0 { ", \"intern\"" } else { "" },
            1 + rng.below(5)
        );
    }
    out.push_str(
        "\n/// Production goes to the first cluster, the rest to the second.\n\
         rule prod_placement weight 100 when labels.env == \"prod\" {\n    place on c0\n}\n\
         rule other_placement weight 100 when labels.env != \"prod\" {\n    place on c1 namespace \"apps-${labels.env}\"\n}\n",
    );
    out.push_str("\ngrant domain_admin when \"platform-admins\" in user.groups\ngrant consumer on * when true\n");
    for ns in 0..config.namespaces {
        let _ = writeln!(out, "grant namespace_admin on ns{ns} when user.team == \"{}\"", TEAMS[ns % TEAMS.len()]);
    }
    SynthFile { path: "system.apt".to_string(), text: out }
}

fn namespace_file(config: &SynthConfig, ns: usize, rng: &mut Rng) -> String {
    let mut out = String::new();
    let team = TEAMS[ns % TEAMS.len()];
    let _ = writeln!(out, "/// Namespace {ns}, generated.\nnamespace ns{ns} owned_by {team}\n");
    out.push_str("import system\n");
    if has_upstream(ns) {
        let _ = writeln!(out, "import ns{} as previous", ns - 1);
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "label replicas: int = 1\nlabel debug: bool = false\nlabel tier: \"gold\" | \"silver\" | \"bronze\" = \"bronze\"\n"
    );
    for s in 0..config.services_per_namespace {
        service(&mut out, config, ns, s, rng);
    }
    for c in 0..config.contracts_per_namespace {
        contract(&mut out, config, ns, c, rng);
    }
    for r in 0..config.rules_per_namespace {
        rule(&mut out, config, ns, r, rng);
    }
    let claims = match config.total_claims {
        Some(total) => total / config.namespaces + usize::from(ns < total % config.namespaces),
        None => config.claims_per_namespace,
    };
    for c in 0..claims {
        claim(&mut out, config, ns, c, rng);
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    out
}

/// Namespaces build on the previous one in chains of four, as teams' layers do.
fn has_upstream(ns: usize) -> bool {
    !ns.is_multiple_of(4)
}

fn service(out: &mut String, config: &SynthConfig, ns: usize, s: usize, rng: &mut Rng) {
    let chart = rng.pick(&CHARTS);
    let _ = writeln!(out, "/// Service {s} of namespace {ns}.\nservice svc{s} {{");
    if has_upstream(ns) {
        let dep = rng.below(config.contracts_per_namespace);
        let _ = writeln!(
            out,
            "    /// A dependency on the previous namespace.\n    component upstream uses previous.api{dep}"
        );
    }
    let _ = writeln!(
        out,
        "    component store chart \"bitnami/{chart}\" {{\n        repo \"https://charts.example.com/bitnami\"\n        version \"{}.{}.{}\"\n        values {{\n            replicas = labels.replicas\n            fullname = \"${{instance.name}}-{chart}\"\n            persistence = {{ enabled = true, size = \"{}Gi\" }}\n        }}\n        discovery {{ url = \"{chart}://${{instance.name}}:{}\" }}\n    }}",
        1 + rng.below(20),
        rng.below(10),
        rng.below(10),
        1 + rng.below(100),
        1000 + rng.below(9000)
    );
    let _ = writeln!(
        out,
        "    component app chart \"oci://registry.example.com/charts/app\" {{\n        version \"1.0.0\"\n        after store{}\n        when labels.debug == false or labels.env != \"prod\"\n        values {{\n            image = \"registry.example.com/ns{ns}/svc{s}:{}\"\n            store = \"${{store.discovery.url}}\"\n            debug = labels.debug\n        }}\n    }}",
        if has_upstream(ns) { ", upstream" } else { "" },
        rng.below(1000)
    );
    out.push_str("}\n\n");
}

fn contract(out: &mut String, config: &SynthConfig, ns: usize, c: usize, rng: &mut Rng) {
    let service = c % config.services_per_namespace;
    let _ = writeln!(
        out,
        "/// Contract {c}: what consumers of namespace {ns} ask for.\ncontract api{c} {{\n    set labels.tier = \"silver\"\n    /// Production, shared per team.\n    context prod when labels.env == \"prod\" and labels.replicas >= {} {{\n        set labels.replicas = {}\n        allocate per user.team\n        use svc{service}\n    }}\n    /// Staging, shared by everyone.\n    context stage when labels.env == \"stage\" {{\n        remove labels.debug\n        use svc{service}\n    }}\n    /// Development, one per user.\n    context dev {{\n        allocate per user.name, \"${{labels.env}}-dev\"\n        use svc{service}\n    }}\n}}\n",
        1 + rng.below(3),
        2 + rng.below(4)
    );
}

fn rule(out: &mut String, config: &SynthConfig, ns: usize, r: usize, rng: &mut Rng) {
    let weight = 10 * (1 + rng.below(10));
    let env = rng.pick(&ENVS);
    let body = match r % 3 {
        0 => format!("place on system.c{} namespace \"ns{ns}-${{labels.env}}\"", ns % config.clusters),
        1 => format!("set labels.replicas = {}", 1 + rng.below(5)),
        _ => format!("reject \"interns may not use {env} in ns{ns}\""),
    };
    let criteria = if r % 3 == 2 {
        format!("\"intern\" in user.groups and labels.env == \"{env}\"")
    } else {
        format!("labels.env == \"{env}\" and not labels.debug")
    };
    let _ = writeln!(out, "/// Rule {r}.\nrule r{r} weight {weight} when {criteria} {{\n    {body}\n}}\n");
}

fn claim(out: &mut String, config: &SynthConfig, ns: usize, c: usize, rng: &mut Rng) {
    let user = rng.below(config.users);
    let contract = c % config.contracts_per_namespace;
    let env = rng.pick(&ENVS);
    let _ = writeln!(
        out,
        "/// Claim {c}.\nclaim c{c} {{\n    user \"user{user}@example.com\"\n    contract ns{ns}.api{contract}\n    labels {{ env = \"{env}\", replicas = {} }}\n}}\n",
        1 + rng.below(4)
    );
}

/// A diamond chain of `depth` services (issue #11): the service of level `i` has two components,
/// `left` and `right`, that both use the contract of level `i + 1`, and a chart `app` reading what
/// `left` receives; the last level has the chart only. A claim reaches the last level by
/// `2^(depth - 1)` paths, all with the same labels and placement, so it has, by construction,
/// [`diamond_instances`] instances. `claims` claims, each with its own instances
/// (`allocate per claim.id`).
pub fn diamond(depth: usize, claims: usize) -> Vec<SynthFile> {
    let system = "namespace system\n\nteam ops\n\nuser \"ada@example.com\" {\n    team ops\n}\n\n\
                  cluster local {\n    namespace \"apps\"\n}\n\nrule everything_on_local {\n    place on local\n}\n\n\
                  grant consumer on chain when true\n";
    let mut out = String::from("/// A diamond chain, generated.\nnamespace chain owned_by ops\n\n");
    for level in 0..depth {
        let _ = writeln!(out, "service s{level} {{");
        let last = level + 1 == depth;
        if !last {
            let next = level + 1;
            let _ = writeln!(out, "    component left uses l{next}\n    component right uses l{next}");
        }
        let _ = writeln!(out, "    component app chart \"bitnami/nginx\" {{\n        version \"15.0.0\"");
        if last {
            let _ = writeln!(out, "        values {{ level = {level} }}");
        } else {
            let _ = writeln!(
                out,
                "        after left, right\n        values {{ level = {level}, below = left.discovery.url, other = right.discovery.url }}"
            );
        }
        let _ = writeln!(out, "        discovery {{ url = \"http://${{instance.name}}:80\" }}\n    }}\n}}\n");
        let _ = writeln!(
            out,
            "contract l{level} {{\n    context main {{\n        allocate per claim.id\n        use s{level}\n    }}\n}}\n"
        );
    }
    for c in 0..claims {
        let _ = writeln!(out, "claim c{c} {{\n    user \"ada@example.com\"\n    contract chain.l0\n}}\n");
    }
    out.truncate(out.trim_end().len());
    out.push('\n');
    vec![
        SynthFile { path: "system.apt".to_string(), text: system.to_string() },
        SynthFile { path: "chain/policy.apt".to_string(), text: out },
    ]
}

/// The instances of one claim of [`diamond`]: per level but the last, the service instance,
/// `left`, `right` and `app`; the last level's service instance and `app`.
pub fn diamond_instances(depth: usize) -> usize {
    4 * depth.saturating_sub(1) + 2
}

/// The policy shape of Aptomi's own engine benchmark (issue #11), for measuring the whole `aptc
/// plan` process against it: 20 services of 3 charts each (values templated from labels, reading a
/// sibling's and a dependency's discovery), in four levels where a service `uses` up to two
/// services of the next level (a DAG of depth 3); 20 contracts of 5 contexts each (one that never
/// matches, `prod` shared, `staging` per team, `dev` per user with a negative condition, a fallback
/// per `"${team}-${env}"`, each setting the `tier` the values read); 10 rules (never-matching
/// rejects, one reject of a blocked team, prod placed on cluster 0 and the rest on cluster 1); one
/// grant; `users` users with 3 labels; `claims` claims over half of the contracts with random
/// env/team/version/region, 2% of them by the blocked team, in files of 1,000.
pub fn engine(claims: usize, users: usize, seed: u64) -> Vec<SynthFile> {
    const SERVICES: usize = 20;
    const LEVEL: usize = SERVICES / 4;
    const TEAMS: [&str; 9] = ["web", "mobile", "data", "ml", "infra", "search", "ads", "pay", "mail"];
    const ENVS: [&str; 3] = ["dev", "staging", "prod"];
    let mut rng = Rng::new(seed);
    let mut system = String::from(
        "/// Shared definitions: labels, clusters, users, rules and access.\nnamespace system owned_by ops\n\n\
         label env: \"dev\" | \"staging\" | \"prod\" = \"dev\"\nlabel team: string = \"none\"\n\
         label version: string = \"v1\"\nlabel region: string = \"us-east\"\n\
         label tier: \"gold\" | \"silver\" | \"bronze\" = \"bronze\"\n\
         label dept: string = \"eng\"\nlabel seniority: int = 1\nlabel oncall: bool = false\n\n\
         team ops\n\ncluster c0 {\n    namespace \"prod\"\n}\n\ncluster c1 {\n    namespace \"apps\"\n}\n\n",
    );
    for u in 0..users {
        let _ = writeln!(
            system,
            "user \"u{u}@example.com\" {{\n    team ops\n    labels {{ dept = \"{}\", seniority = {}, oncall = {} }}\n}}",
            rng.pick(&TEAMS),
            1 + rng.below(5),
            rng.below(4) == 0
        );
    }
    system.push('\n');
    for r in 0..7 {
        let _ = writeln!(
            system,
            "rule never{r} weight {} when labels.region == \"nowhere-{r}\" {{\n    reject \"region nowhere-{r} is closed\"\n}}\n",
            10 + r
        );
    }
    system.push_str(
        "rule blocked weight 20 when labels.team == \"blocked\" {\n    reject \"team blocked is suspended\"\n}\n\n\
         rule prod_placement weight 100 when labels.env == \"prod\" {\n    place on c0\n}\n\n\
         rule other_placement weight 100 when labels.env != \"prod\" {\n    place on c1\n}\n\n\
         grant consumer on * when true\n",
    );
    let mut apps =
        String::from("/// Services and contracts, generated.\nnamespace apps owned_by ops\n\nimport system\n\n");
    for s in 0..SERVICES {
        let level = s / LEVEL;
        let uses: Vec<usize> = if level + 1 < 4 {
            let first = (level + 1) * LEVEL + rng.below(LEVEL);
            let second = (level + 1) * LEVEL + rng.below(LEVEL);
            if first == second { vec![first] } else { vec![first, second] }
        } else {
            Vec::new()
        };
        let _ = writeln!(apps, "/// Service {s}, level {level}.\nservice svc{s} {{");
        for (d, used) in uses.iter().enumerate() {
            let _ = writeln!(apps, "    component dep{d} uses ctr{used}");
        }
        let _ = writeln!(
            apps,
            "    component db chart \"bitnami/postgresql\" {{\n        version \"12.{}.0\"\n        values {{ tier = labels.tier, owner = \"${{labels.team}}-db\" }}\n        discovery {{ db_url = \"pg://${{instance.name}}:5432\" }}\n    }}",
            rng.below(10)
        );
        let _ = writeln!(
            apps,
            "    component cache chart \"bitnami/redis\" {{\n        version \"17.{}.0\"\n        after db\n        values {{ db = db.discovery.db_url, tier = labels.tier, region = labels.region }}\n        discovery {{ cache_url = \"redis://${{instance.name}}:6379\" }}\n    }}",
            rng.below(10)
        );
        let after = std::iter::once("cache".to_string()).chain((0..uses.len()).map(|d| format!("dep{d}")));
        let upstream = if uses.is_empty() { "\"none\"".to_string() } else { "dep0.discovery.url".to_string() };
        let _ = writeln!(
            apps,
            "    component app chart \"oci://registry.example.com/charts/app\" {{\n        version \"1.0.0\"\n        after {}\n        values {{\n            cache = cache.discovery.cache_url\n            upstream = {upstream}\n            image = \"registry.example.com/svc{s}:${{labels.version}}\"\n            env = labels.env\n            tier = labels.tier\n        }}\n        discovery {{ url = \"http://${{instance.name}}:80\" }}\n    }}\n}}\n",
            after.collect::<Vec<_>>().join(", ")
        );
    }
    for c in 0..SERVICES {
        let _ = writeln!(
            apps,
            "/// Contract {c}.\ncontract ctr{c} {{\n    /// Never chosen: no claim comes from there.\n    context closed when labels.region == \"antarctica\" {{\n        use svc{c}\n    }}\n    /// Production: one shared instance.\n    context prod when labels.env == \"prod\" {{\n        set labels.tier = \"gold\"\n        use svc{c}\n    }}\n    /// Staging: one per team.\n    context staging when labels.env == \"staging\" {{\n        set labels.tier = \"silver\"\n        allocate per labels.team\n        use svc{c}\n    }}\n    /// Development outside Europe: one per user.\n    context dev when labels.env == \"dev\" and labels.region != \"eu-central\" {{\n        set labels.tier = \"bronze\"\n        allocate per user.name\n        use svc{c}\n    }}\n    /// Everything else: one per team and environment.\n    context fallback {{\n        set labels.tier = \"bronze\"\n        allocate per \"${{labels.team}}-${{labels.env}}\"\n        use svc{c}\n    }}\n}}\n"
        );
    }
    apps.truncate(apps.trim_end().len());
    apps.push('\n');
    let mut files = vec![
        SynthFile { path: "system.apt".to_string(), text: system },
        SynthFile { path: "apps/services.apt".to_string(), text: apps },
    ];
    for chunk in 0..claims.div_ceil(1_000) {
        let mut out = String::from("/// Claims, generated.\nnamespace apps\n\nimport system\n\n");
        for c in chunk * 1_000..claims.min((chunk + 1) * 1_000) {
            let team = if rng.below(50) == 0 { "blocked" } else { rng.pick(&TEAMS) };
            let _ = writeln!(
                out,
                "claim k{c} {{\n    user \"u{}@example.com\"\n    contract ctr{}\n    labels {{ env = \"{}\", team = \"{team}\", version = \"v{}\", region = \"{}\" }}\n}}\n",
                rng.below(users),
                rng.below(SERVICES / 2),
                rng.pick(&ENVS),
                1 + rng.below(5),
                rng.pick(&REGIONS)
            );
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        files.push(SynthFile { path: format!("apps/claims{chunk}.apt"), text: out });
    }
    files
}
