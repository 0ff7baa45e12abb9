#!/usr/bin/env bash
# Rebuilds the dashboard's assets (ui/web/dist, embedded in the aptc binary and committed) from
# ui/web/src with the locked npm packages. `--check`: then fail if they differ from the committed
# ones (CI), so the binary always serves what the sources say.
set -euo pipefail
cd "$(dirname "$0")/../ui/web"
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
if [[ "${1:-}" == "--check" ]]; then
  if ! git diff --exit-code --stat -- dist || [[ -n "$(git status --porcelain -- dist)" ]]; then
    echo "ui/web/dist differs from what ui/web/src builds: run tools/ui-build.sh and commit ui/web/dist" >&2
    git status --porcelain -- dist >&2
    exit 1
  fi
fi
