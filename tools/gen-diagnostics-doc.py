#!/usr/bin/env python3
"""Regenerates docs/diagnostics.md from tests/cases/diagnostics/*.apt and the real output of
`aptc check` on each case, so every documented example is one the compiler really produces.

Usage: cargo build && python3 tools/gen-diagnostics-doc.py
"""
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent
APTC = ROOT / "target" / "debug" / "aptc"

# What each code means and how to fix it, in the words a user needs.
EXPLAIN = {
    "APT0001": "A character that starts no token, such as `§` or `@`. Runs of such characters are reported once.",
    "APT0002": "A string has no closing `\"` on its line. Strings are one line; write `\\n` for a line break.",
    "APT0003": "A `/*` comment is never closed. Block comments nest, so every `/*` needs its own `*/`.",
    "APT0004": "The parser met a token that cannot stand here. The label lists what could; for a misspelt keyword the help suggests the right one, and `=` where `==` was meant is called out. The parser then skips to the next statement or declaration, so one mistake costs one error.",
    "APT0005": "A `{` whose `}` never came. The block is taken to end at the next top-level declaration (or the end of the file), so the rest of the file is still checked; the error points at the `{` left open.",
    "APT0006": "An integer literal does not fit in a signed 64-bit integer.",
    "APT0007": "A backslash escape other than `\\\"`, `\\\\`, `\\n`, `\\t`, `\\r` or `\\$`.",
    "APT0008": "A `${…}` interpolation that is empty, never closed, or does not hold a valid expression.",
    "APT0009": "Comparisons do not chain: `1 < x < 5` is an error rather than the surprise it is in some languages. Join them with `and`.",
    "APT0010": "A file larger than 4 GiB (spans are 32-bit). Split the policy into several files. (No example: the file would be too large to ship.)",
    "APT0011": "Something is nested more than 256 levels deep: brackets (blocks included), `not`, `-`, the `and`/`or` of one chain, and interpolations each add a level (docs/language.md §13.1). The deeper part is skipped and reported once. No real policy nests this deeply; the bound keeps the compiler, the formatter and the language server from running out of stack on generated or hostile input.",
    "APT0101": "Every file starts with `namespace NAME`: it says which team's namespace the file's objects belong to. A declaration that comes after other items is reported too.",
    "APT0102": "A file belongs to exactly one namespace; a second `namespace` declaration is an error.",
    "APT0103": "A declaration lacks something it cannot work without: a contract without contexts, a context without `use`, a claim without a contract or without a consumer (`user` or `team`).",
    "APT0104": "A statement that may appear once per block (like `version`, `use`, `contract`) is given twice.",
    "APT0105": "Two statements that exclude each other: a claim is made by a `user` or by a `team`, not both.",
    "APT0106": "A statement that does not apply where it stands: `repo`/`version` outside a `chart` component, `values` on a `uses` component, or `fn` outside the standard library.",
    "APT0107": "A `grant` names a role that does not exist. The roles are `domain_admin`, `namespace_admin` and `consumer`.",
    "APT0108": "A map literal has the same key twice; the second would silently win.",
    "APT0150": "(Warning.) A chart component without `version` deploys whatever the repository serves next: a chart release can change production without any policy change. Local charts (`./…`) are exempt.",
    "APT0151": "(Warning.) A declaration that can have no effect: a service without components, a rule without actions.",
    "APT0201": "A reference names nothing: a contract, service, cluster, team, user, component (`after`) or namespace that does not exist where it is written, or a path with more than two parts. Aptomi found a misspelt `ns/name` only when it resolved a claim, at deploy time; `aptc` resolves every name before anything runs. The help suggests similarly spelt names and, for a name declared in another namespace, its qualified form. The same code reports a context that `use`s a service of another namespace (depend on other teams' services through their contracts) and a grant on a namespace no file declares.",
    "APT0202": "Two objects of one kind share a name: two labels, services, contracts, rules or claims of one namespace (even in different files), two clusters, teams or users of the policy (user names compare case-insensitively), two components of a service, two contexts of a contract, or a value listed twice in an enum type. Which one a reference meant would depend on the order files are read. Rename one, or remove the second.",
    "APT0203": "An unqualified name is provided by two imports (two glob imports that both declare it, or an object import that clashes with a declaration of the file's own namespace), so it is not clear which object is meant. For a contract or service, qualify the reference (`platform.kafka`). A label key cannot be qualified: import the one you mean by name (`import platform.region`), which takes precedence over glob imports, or drop one of the glob imports.",
    "APT0204": "Namespaces import each other, directly or through others. Namespaces should form layers, with shared objects (the stage, the region) in a lower one such as `system`; a cycle usually means a label belongs in a third namespace that both import. A qualified reference (`ns.name`) to a contract or service needs no import and does not count.",
    "APT0205": "An `import` brings in nothing: the namespace does not exist, the namespace declares no contract, service or label of that name (clusters, rules and claims cannot be imported), the path has more than two parts, or one `as` renames several names (`import ns.{a, b} as c`).",
    "APT0206": "Two files of one namespace name different owning teams with `owned_by`. The owner's members administer the namespace, so which team that is must not depend on which file is read first. Name the same team everywhere, or write `owned_by` in one file only.",
    "APT0207": "(Warning.) An import from which the file resolves no name. Imports apply to one file only, so an import that another file of the namespace needs must be written there. Remove it; a qualified reference (`ns.name`) needs no import.",
    "APT0208": "A file named by `users from` cannot be used: it cannot be read, it is not a YAML (or JSON) list of users, a user has a field other than `name`, `team`, `groups` and `labels`, or a user is listed twice. The path is relative to the directory of the `.apt` file that names it. Until the file is fixed, its users are unknown, so claims and `--as` that name them fail too.",
    "APT0209": "The files of a `manifests \"GLOB\"` component cannot be used: the glob matches no file, is not a valid glob, is absolute or climbs out of the directory of the `.apt` file (`..`), or a matched file cannot be read, is not UTF-8 text or is larger than 16 MiB. The glob is relative to the directory of the file that declares the component; `*` and `?` match within one directory, `**` across directories. Manifests are read and checked with the policy, so this is found by `aptc check`, not by a deploy.",
    "APT0210": "A chart component names a local chart (`chart \"./PATH\"`, `../PATH` or `/PATH`, without `repo`) that Helm could not be given: nothing is at the path, the path is a directory without a `Chart.yaml`, or a file that is not a packaged chart (`.tgz` or `.tar.gz`; an archive's contents are not looked into). The path is relative to the directory of the `.apt` file that declares the component; the message names the path it resolved to. Found by `aptc check` (and the language server, which looks again when a policy file is saved or a `Chart.yaml` or `.tgz` changes on disk), not by a deploy. A chart written with an interpolation is not checked (it is an error of its own, APT0310). Create the chart there (`helm create`), correct the path, or use a chart of a repository (`repo \"URL\"`, `REPO/CHART` or `oci://…`).",
    "APT0301": "A label key (in `labels.KEY`, `set`, `remove`, a `labels { … }` map, `user.labels.KEY` or `cluster.labels.KEY`) that is not a label visible in the file. In Aptomi labels were free-form strings, so a misspelt key was silently `false` in every criterion that read it; here every key must be declared (`label KEY: TYPE`) in the file's namespace or imported from another one.",
    "APT0302": "A value of the wrong type: `set labels.replicas = \"3\"` for an `int` label, comparing an `int` with a string, a list where a scalar is needed (an interpolation, an allocation key), mixed types in a list, an argument of the wrong type. Aptomi guessed types from strings (`\"10\"` became a number); `.apt` has no implicit conversions: use `to_int`, `to_string` or a literal of the right type.",
    "APT0303": "A constant string where an enum is expected that is not one of its values: in a comparison (`labels.env == \"prdo\"`), an `in` list, a `set`, a default or a `labels` map. Such a comparison could never be true; Aptomi would simply never match it. Use one of the listed values, or add the value to the label's type.",
    "APT0304": "A criterion (`when`), or an operand of `and`, `or` or `not`, that is not a `bool`. There is no truthiness: `when labels.replicas` does not mean \"non-zero\". Write the comparison you mean (`labels.replicas > 0`).",
    "APT0305": "A name in an expression that means nothing here: a field that `user`, `claim`, `cluster` or `instance` does not have, a path that starts with none of the names of the language (see docs/language.md §13.3), or a component of the service read other than as `C.discovery.KEY`. The help lists what is available.",
    "APT0306": "A name that exists but is not available where it is used: `cluster` before any rule can have placed the contract (in a contract or context), `instance` outside a component's `values` and `discovery`, `labels` or `claim` in a grant's criteria (grants see `user` only), or any name or call in a value that must be constant (label defaults, the `labels` of claims, users, teams and clusters).",
    "APT0307": "A call to a function that the standard library does not have, or with the wrong number of arguments. The functions, with their signatures, are in `stdlib/prelude.apt`; policies cannot define their own.",
    "APT0308": "A component reads `C.discovery.KEY` of a component `C` it does not depend on, or its own discovery (a `uses` component may re-export what it receives in its own `discovery` map). The value would not be known yet when the component is resolved. Add `after C` to the reading component.",
    "APT0309": "The right side of `matches` is a string literal that is not a valid regular expression. Aptomi would have failed only when a claim evaluated it; here it is an error of the policy. The syntax is that of Rust's `regex` crate; remember that `\\` is written `\\\\` inside a string.",
    "APT0310": "An interpolation (`${…}`) in a string that is read before any consumer exists and must be written as it is: a chart, `repo`, `version`, a `manifests` glob, a path of `users from`, a cluster's `context`, `kubeconfig` or `namespace`, a user name, an enum value, a label key, a discovery key. There is no consumer, label or environment variable to take the value from. Write the value itself, or `\\$` for a literal `$`; to choose a cluster namespace per consumer, use `place on CLUSTER namespace \"…\"` in a rule.",
    "APT0311": "A type that does not exist in a label declaration or a function signature. The types are `string`, `int`, `bool`, `any`, lists `[T]` and enums `\"a\" | \"b\"`.",
    "APT0312": "A component reads `C.discovery.KEY`, but `C` does not publish `KEY`: a chart or manifests component publishes its own `discovery` map; a `uses` component receives the keys that every service its contract may resolve to publishes (plus its own `discovery` entries). In Aptomi a misspelt discovery key rendered `<no value>` and failed only at deploy time.",
    "APT0313": "A secret (`secret_env(NAME)`, `secret_file(PATH)`, `secret_k8s(NAME, KEY)`) where it is not allowed, or a map key `$secret`. A secret may only be a value in a component's `values` map, or inside a list or map there: the resolver keeps a reference, and the value is read only when the instance is deployed, so nothing during resolution can compare, interpolate, convert or pass it on, and no label may hold one. The key `$secret` marks these references in resolved values, so no map may use it. To build a connection string, hand the password to the chart as a value of its own and let the chart assemble it.",
    "APT0314": "A document of a manifest file is not a Kubernetes object: it is not valid YAML, not a mapping, or lacks `apiVersion`, `kind` or `metadata.name`. Manifests are templates (docs/language.md §5.2); the check reads each document with every `${…}` replaced by a plain value, and values are put into the YAML nodes when an instance is rendered, so no value can produce YAML syntax. Empty documents are allowed.",
    "APT0315": "An interpolation of a manifest template is in no key or value: in a YAML comment, a tag (`!${x}`) or an anchor. Manifests are rendered node by node (docs/language.md §5.2): the template is parsed as YAML first, then each value is put into its key or scalar, so a value can never add a key, an item or a document. An interpolation in a comment would be dropped, and one in a tag would change a node's type, so both are refused. Move it into a value, or write `\\${` for a literal `${`.",
    "APT0401": "Components of a service depend on each other in a cycle through `after`, or a component names itself in `after`. None of them could be resolved, deployed or deleted first. Remove one of the dependencies.",
    "APT0402": "A contract reaches itself: one of its contexts uses a service, a component of which uses a contract, …, that leads back to the first contract. Resolving a claim on it would never end. Make one of the services stop using the next contract.",
    "APT0403": "(Warning.) A context that no consumer can ever get: an earlier context has no `when` (or `when true`) and so always matches, or the earlier contexts already cover every value of an enum label. Contexts are tried in order and the first match wins: move the fallback last, or remove the dead context. On a policy without errors, the verification engine (docs/verification.md §7) also proves it for any criteria over labels and the user: no class of the labels the contexts read and no consumer who may claim the contract gets the context (e.g. `labels.replicas > 5` after `labels.replicas > 3`); the note gives the proof.",
    "APT0404": "(Warning.) The contexts of a contract test one enum label, have no fallback, and leave some of its values uncovered: a claim with such a value matches no context and fails when it is resolved. Add a context for the missing values, or a fallback context without `when` at the end.",
    "APT0405": "(Warning.) A rule's criteria require an enum label to have two values at once (`labels.env == \"stage\" and labels.env == \"prod\"`), so the rule never fires. Usually `or` was meant. On a policy without errors, the verification engine (docs/verification.md §7) also proves it for any criteria over labels and the user: they are false for every class of the labels they read and every user and team (e.g. `labels.replicas > 10 and labels.replicas < 5`); the note gives the proof.",
    "APT0406": "(Warning.) A label, service, contract or cluster that nothing refers to: a label nothing reads or sets, a service no context uses, a contract nobody claims or uses, a cluster no rule places anything on. It is dead code, or a misspelt reference elsewhere points somewhere else.",
    "APT0407": "(Warning.) A claim sets a label that its consumer also sets (the user's own labels, or their team's; a team claim: the team's). Resolution lays the consumer's labels over the claim's (docs/language.md §15.1): what administrators state about a consumer cannot be contradicted by the consumer's claim, so the claim's value never takes effect. Remove it from the claim, or change it on the consumer.",
    "APT0408": "(Warning.) A label without a default is read where an unset label fails the claim (a criterion, a value, a template; not inside `default(…)`), and nothing sets it: no claim, user, team, users file, contract, context or rule. Every claim that reaches the read would fail at resolution (docs/language.md §4.4), though the policy checks clean. A cluster's `labels` describe the cluster and set no claim label. Give the label a default, set it somewhere, or read it as `default(labels.NAME, FALLBACK)` where it is optional.",
    "APT0409": "(Warning.) No user or team of the policy has a role in the namespace of a contract (the grants and owners give none), so every claim of it fails, and so does every claim whose resolution reaches it through `uses` (access is checked at each contract entered). Found by the verification engine (docs/verification.md §7) on a policy without errors; the note gives the proof. Grant the consumer role in its namespace, or remove the contract.",
    "APT0410": "(Warning.) Every claim on which a rule could fire has already been rejected by an earlier rule of its namespace, so the rule never has an effect: its labels are never set, its placement never made, its rejection never reported. Rules run in order (local ones, then `system`'s; weight, then name; docs/language.md §7.2) and a rejection stops the claim. Found by the verification engine (docs/verification.md §7) on a policy without errors: the rules before it are run as the resolver runs them, label changes included, from every class of the labels they read and for every user and team; no run reaches the rule with its criteria true, and some run where they hold is rejected first. The note gives the proof, and the earlier rule is pointed at. Narrow the earlier rule, move this one before it (a lower weight), or remove it. A rule whose criteria hold for no claim at all is `APT0405`.",
    "APT0411": "(Warning.) A rule places claims in a Kubernetes namespace that cannot be valid: its `place … namespace` (or, without one, the cluster's `namespace`) is not a DNS-1123 label (1 to 63 characters among `a-z`, `0-9` and `-`, not starting or ending with `-`) for any claim, so every claim it places fails at resolution (docs/language.md §15.4), unless a later rule places it again. Found by the verification engine (docs/verification.md §7) on a policy without errors, with its proof in the note: the literal text already rules every value out (an uppercase letter or `_` in it, a `-` at an end, more than 63 characters), or the name is invalid for every value of the labels it reads (only labels of finite types, bool and enums, are enumerated there) and every user and team. Lowercase it, or replace what cannot be in a name (`replace(user.team, \"_\", \"-\")`).",
    "APT0501": "A claim's consumer (its user, or its team) lacks the `consumer` role (or a stronger one) in a namespace that resolving the claim would enter: the claimed contract's, or that of any contract its services use, directly or not. The claim would be refused when resolved. Grant the role in `system` (`grant consumer on NS when …`), or claim another contract.",
    "APT0502": "With `aptc check --as USER`: an object that `USER` may not define or change. Labels, services, contracts and rules need `namespace_admin` of their namespace, claims `consumer`, and everything in `system` (clusters, users, teams, grants, global rules and labels) `domain_admin`. The roles come from the grants and from `owned_by`. Every object of the policy is reported, not only the ones the user added or changed, so the output also lists objects that others manage (here the team, the user and the grant in `system`); commands that compare with the previous policy report only what changed (docs/language.md §11.3).",
    "APT0601": "`aptc verify` found a possible claim for which an `assert` block's expectation does not hold (docs/language.md §19, docs/verification.md). The claim is a counterexample: a concrete user, contract and labels, printed as a `claim` block that, pasted into a `test`, makes `aptc test` reproduce it. `aptc verify` prints it with its decision chain; `--format sarif` and the editor show it at the assertion's name, with the expectation it breaks. Fix the policy, or the assertion if it says more than you meant (narrow it with `for` or `when`).",
    "APT0602": "(Warning in the editor and with `aptc verify --allow-unknown`; otherwise it fails `aptc verify`.) The engine could neither prove nor violate an assertion: a label is used in a way its values cannot be split into finitely many classes (passed to a function whose result is compared, matched with a regular expression, …), or the assertion's possible claims exceed the budget of 200,000. The message says which label and use, or which contract blew the budget. docs/verification.md lists what the engine decides; narrow the assertion with `for` or `when`, or compare the label itself.",
    "APT0503": "`aptc check --as USER` names a user that the policy does not declare (with `user \"NAME\"` in namespace `system`), so no roles can be computed for it. User names compare case-insensitively.",
}

def main():
    codes = []
    for line in (ROOT / "compiler/src/diagnostics/codes.rs").read_text().splitlines():
        line = line.strip()
        if line.startswith(tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")) and '= "APT' in line:
            name, rest = line.split("=", 1)
            code, severity, title = [p.strip().strip(";").strip('"') for p in rest.split(",", 2)]
            codes.append((code, severity, title))
    out = [
        "# Diagnostics",
        "",
        "Every diagnostic aptc reports has a stable code. Codes never change meaning once released, so CI",
        "configurations can rely on them. `aptc check --format json` and `--format sarif` carry the same codes.",
        "",
        "- `APT00xx`: lexical and syntax errors (the parser recovers and keeps going).",
        "- `APT01xx`: the structure of one declaration (what it must, may and may not contain).",
        "- `APT02xx`: names, imports and definitions across files and namespaces.",
        "- `APT03xx`: types of labels, expressions and interpolated strings.",
        "- `APT04xx`: graph checks and lints (cycles, unreachable contexts, unused objects).",
        "- `APT05xx`: ownership and access control.",
        "- `APT06xx`: assertions (`aptc verify`; their examples show what `aptc verify` prints).",
        "",
        "Errors make `aptc check` exit 1; warnings do so only with `--deny-warnings`.",
        "Each example below is a file, or a directory of files, in `tests/cases/diagnostics/`, and the output is what `aptc check` prints",
        "for it (this page is generated by `tools/gen-diagnostics-doc.py`).",
        "",
        "| code | severity | title |",
        "| --- | --- | --- |",
    ]
    out += [f"| [{c}](#{c.lower()}) | {s.lower()} | {t} |" for c, s, t in codes]
    out.append("")
    for code, severity, title in codes:
        out += [f"## {code}", "", f"**{title}** ({severity.lower()})", "", EXPLAIN[code], ""]
        cases = sorted((ROOT / "tests/cases/diagnostics").glob(f"{code}_*"))
        for case in cases:
            rel = case.relative_to(ROOT)
            args = []
            if case.is_dir():
                # A case of several files (policy files, and files they read such as users
                # files): show each, then check the directory. ARGS shows in the command line.
                fences = {".apt": "apt", ".yaml": "yaml", ".yml": "yaml", ".json": "json"}
                for file in sorted(f for f in case.rglob("*") if f.is_file() and f.name != "ARGS"):
                    fence = fences.get(file.suffix, "text")
                    try:
                        text = file.read_text()
                    except UnicodeDecodeError:
                        # A binary file (a packaged chart): named, not shown.
                        out += [f"`{file.relative_to(case)}`: a binary file ({file.stat().st_size} bytes).", ""]
                        continue
                    out += [f"`{file.relative_to(case)}`:", "", f"```{fence}", text.rstrip("\n"), "```", ""]
                if (case / "ARGS").exists():
                    args = (case / "ARGS").read_text().split()
            else:
                out += ["```apt", case.read_text().rstrip("\n"), "```", ""]
            command = "verify" if code.startswith("APT06") else "check"
            run = subprocess.run([str(APTC), command, "--color", "never", *args, str(rel)], cwd=ROOT, capture_output=True, text=True)
            shown = " ".join([f"aptc {command}", *args, str(rel)])
            out += ["```text", f"$ {shown}", run.stdout.rstrip("\n"), "```", ""]
    (ROOT / "docs/diagnostics.md").write_text("\n".join(out))

if __name__ == "__main__":
    main()
