#!/usr/bin/env bash
# Measures aptc's deploy overhead against Helm's own time (docs/performance.md, "Deploying").
#
# Generates a policy of N claims, each with an instance of its own of the quickstart's local
# chart, then times (1) `helm template` run once per instance, one after another, with a values
# file as aptc writes it, and (2) `aptc deploy --target render --parallel 1` of the same instances
# (planning, rendering through that same helm, stamping, writing, journaling, the revision). The
# difference is aptc's overhead. Also times the parallel deploy (--parallel 4) and a no-op
# redeploy.
#
#   tools/measure-deploy.sh [N]        (default 200; needs helm: tools/install-helm.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-200}"
export PATH="$PWD/.tools/bin:$PATH"
command -v helm >/dev/null || { echo "helm is missing: run tools/install-helm.sh" >&2; exit 2; }
cargo build --release --quiet
aptc="$PWD/target/release/aptc"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

mkdir -p "$work/policy"
cp -r examples/quickstart/charts "$work/policy/"
cp benches/fixtures/deploy-system.apt "$work/policy/system.apt"
{
  cat <<'APT'
namespace perf owned_by perf_team

label slot: string = ""

service web {
    component web chart "./charts/hello" {
        values {
            replicaCount = 1
            text = "slot ${labels.slot}"
        }
    }
}

contract web {
    context each {
        allocate per labels.slot
        use web
    }
}
APT
  for i in $(seq 1 "$n"); do
    printf '\nclaim c%d {\n    user "perf@example.com"\n    contract web\n    labels { slot = "s%d" }\n}\n' "$i" "$i"
  done
} > "$work/policy/perf.apt"
"$aptc" check "$work/policy" >/dev/null

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc; }

# (1) helm alone: one `helm template` per instance, as aptc runs it.
start=$(now)
for i in $(seq 1 "$n"); do
  printf 'replicaCount: 1\ntext: "slot s%d"\n' "$i" > "$work/values.yaml"
  helm template "web-$i" "$work/policy/charts/hello" --namespace perf --values "$work/values.yaml" > /dev/null
done
helm_s=$(since "$start")

# (2) aptc, one instance at a time.
start=$(now)
"$aptc" deploy --target render --parallel 1 --yes --as perf@example.com \
  --state "$work/seq.db" --out "$work/seq" "$work/policy" > /dev/null
seq_s=$(since "$start")

# (3) aptc, four at a time; (4) again, with nothing to do.
start=$(now)
"$aptc" deploy --target render --parallel 4 --yes --as perf@example.com \
  --state "$work/par.db" --out "$work/par" "$work/policy" > /dev/null
par_s=$(since "$start")
start=$(now)
"$aptc" deploy --target render --yes --as perf@example.com \
  --state "$work/par.db" --out "$work/par" "$work/policy" > /dev/null
noop_s=$(since "$start")

overhead=$(echo "scale=1; ($seq_s - $helm_s) * 100 / $helm_s" | bc)
printf 'instances: %d (helm %s)\n' "$n" "$(helm version --short)"
printf 'helm template alone, sequential:   %6.2f s\n' "$helm_s"
printf 'aptc deploy --parallel 1:          %6.2f s  (overhead %s%%)\n' "$seq_s" "$overhead"
printf 'aptc deploy --parallel 4:          %6.2f s\n' "$par_s"
printf 'aptc deploy, no changes:           %6.2f s\n' "$noop_s"
