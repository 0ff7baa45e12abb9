#!/usr/bin/env bash
# Compares two aptc binaries on `aptc plan --format json` of Aptomi's engine shape (issue #11;
# docs/performance.md): CPU (user + sys) and peak RSS of the whole process, the runs of the two
# binaries alternated so that a change of the machine's speed hits both, and the outputs compared
# byte for byte. With --callgrind, also the instructions of one run each (the steadier figure:
# this machine's CPU varies by ±15% between runs of one binary).
#
#   tools/measure-plan.sh [--runs N] [--claims N] [--callgrind] OLD_APTC NEW_APTC
#
# Build each binary with `cargo build --profile profiling --bin aptc` and copy
# target/profiling/aptc aside (the profiling profile is the release one with debug symbols).
# The policy is generated once per claim count under target/measure-plan/ (`synth --engine`).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=8
claims=10000
callgrind=false
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    --claims) claims="$2"; shift 2 ;;
    --callgrind) callgrind=true; shift ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 2 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
old="$(realpath "$1")"
new="$(realpath "$2")"
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing: apt-get install time" >&2; exit 2; }

policy="target/measure-plan/engine$claims"
if [ ! -d "$policy" ]; then
  cargo build --quiet --profile profiling --example synth
  target/profiling/examples/synth --engine --claims "$claims" --out "$policy" >/dev/null
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# `plan` exits 1 when a claim fails, as most of the engine shape's claims do.
plan() { "$1" plan --format json "$policy" > "$2" 2>/dev/null || [ $? -eq 1 ]; }

plan "$old" "$work/old.json"
plan "$new" "$work/new.json"
if cmp -s "$work/old.json" "$work/new.json"; then same="identical"; else same="DIFFERENT"; fi

for _ in $(seq 1 "$runs"); do
  for which in old new; do
    bin="$old"; [ "$which" = new ] && bin="$new"
    /usr/bin/time -f "$which %U %S %M" -a -o "$work/times" \
      sh -c '"$1" plan --format json "$2" > /dev/null 2>&1; [ $? -le 1 ]' - "$bin" "$policy"
  done
done

echo "aptc plan --format json, $claims claims of the engine shape, $runs runs each, alternated"
echo "outputs: $same"
python3 - "$work/times" <<'PY'
import statistics, sys
runs = {"old": [], "new": []}
for line in open(sys.argv[1]):
    which, user, system, rss = line.split()
    runs[which].append((float(user) + float(system), int(rss) / 1024))
for which, got in runs.items():
    cpu = sorted(c for c, _ in got)
    rss = sorted(r for _, r in got)
    print(f"{which}: CPU {cpu[0]:.2f}-{cpu[-1]:.2f} s, median {statistics.median(cpu):.3f}; "
          f"peak RSS {rss[0]:.1f}-{rss[-1]:.1f} MiB, median {statistics.median(rss):.1f}")
paired = [n[0] - o[0] for o, n in zip(runs["old"], runs["new"])]
print(f"new - old, run by run: CPU median {statistics.median(paired):+.3f} s")
PY

if $callgrind; then
  command -v valgrind >/dev/null || { echo "valgrind is missing: apt-get install valgrind" >&2; exit 2; }
  for which in old new; do
    bin="$old"; [ "$which" = new ] && bin="$new"
    valgrind --tool=callgrind --callgrind-out-file="$work/cg.$which" "$bin" plan --format json "$policy" \
      > /dev/null 2> "$work/cg.$which.err" || true
    refs=$(grep -o 'refs: *[0-9,]*' "$work/cg.$which.err" | tr -dc '0-9')
    echo "$which: $(python3 -c "print(f'{$refs / 1e6:,.1f} M instructions')")"
  done
fi
