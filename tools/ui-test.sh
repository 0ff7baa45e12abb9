#!/usr/bin/env bash
# The dashboard in a real browser (ui/web/tests/browser.mjs): Debian's Chromium, headless, driven
# by playwright-core from the locked npm packages. Needs /usr/bin/chromium (`apt-get install -y
# chromium`; .ci/run installs it) and the debug aptc, which it builds if needed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ! -x /usr/bin/chromium ]]; then
  echo "tools/ui-test.sh: /usr/bin/chromium is missing: apt-get install -y chromium" >&2
  exit 2
fi
# The aptc the README's test command builds (`cargo test --workspace`): a plain `cargo build`
# resolves features without the dev-dependencies and would build much of the workspace again.
cargo test --workspace --locked --quiet --no-run
(cd ui/web && npm ci --no-audit --no-fund --loglevel=error)
# Each test has 3 minutes and the whole run 20: a browser that hangs fails the run instead of
# keeping CI waiting.
APTC="$PWD/target/debug/aptc" timeout --kill-after=30 1200 \
  node --test --test-timeout=180000 ui/web/tests/browser.test.mjs
