#!/usr/bin/env bash
# Checks the editor support: the tree-sitter grammar (grammar/tree-sitter-apt), the VS Code
# extension (editors/vscode), and `aptc lsp` in a real editor (Neovim's LSP client, end to end:
# editors/neovim/test/lsp_e2e.lua). Meant for CI on a fresh machine with the Rust toolchain (and
# its C compiler), Python 3 and Node >= 20; it installs everything else itself:
#
#   - tree-sitter-cli (pinned below) into .tools/ with `cargo install` when it is missing; this
#     compile dominates the first run (4.5 to 7 minutes on a 2-core machine), later runs reuse it;
#   - the extension's npm packages, exactly as package-lock.json pins them (`npm ci`);
#   - Neovim (0.7 or later), with apt-get when `nvim` is missing and the script runs as root
#     (otherwise the nvim part is skipped with a message), and aptc itself (`cargo test --no-run`, debug;
#     set APTC_BIN to test another binary instead).
#
# Usage: tools/editors-test.sh [tree-sitter|vscode|nvim]...   (no argument: all three)
# Exits non-zero on the first failure.
set -euo pipefail

TREE_SITTER_VERSION=0.27.1
MIN_NODE_MAJOR=20
MIN_NVIM_MINOR=7     # Neovim 0.7: nvim_create_autocmd and the vim.lsp API the test uses
NVIM_TIMEOUT=60      # seconds for the whole Neovim session (the test itself takes about a second)

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
GRAMMAR="$ROOT/grammar/tree-sitter-apt"
VSCODE="$ROOT/editors/vscode"
TOOLS="$ROOT/.tools"
TREE_SITTER="$TOOLS/bin/tree-sitter"

# The CLI's configuration and compiled parsers stay in .tools, not in $HOME.
export TREE_SITTER_DIR="$TOOLS/tree-sitter"
export TREE_SITTER_LIBDIR="$TOOLS/tree-sitter/lib"

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT

started=$SECONDS
step_started=$SECONDS
step() {
    step_started=$SECONDS
    printf '\n== %s\n' "$*"
}
done_step() {
    printf '   ok (%ds)\n' "$((SECONDS - step_started))"
}
fail() {
    printf 'editors-test: FAILED: %s\n' "$*" >&2
    exit 1
}

# ------------------------------------------------------------------------------------ tree-sitter

install_tree_sitter() {
    step "tree-sitter CLI $TREE_SITTER_VERSION in .tools/"
    local have=""
    if [[ -x "$TREE_SITTER" ]]; then
        have="$("$TREE_SITTER" --version | awk '{print $2}')"
    fi
    if [[ "$have" == "$TREE_SITTER_VERSION" ]]; then
        echo "   already installed: $TREE_SITTER"
    else
        command -v cargo >/dev/null || fail "cargo is needed to install tree-sitter-cli"
        echo "   cargo install tree-sitter-cli --version $TREE_SITTER_VERSION --locked --root .tools${have:+ (replacing $have)}"
        cargo install tree-sitter-cli --version "$TREE_SITTER_VERSION" --locked --root "$TOOLS" --force
    fi
    mkdir -p "$TREE_SITTER_DIR" "$TREE_SITTER_LIBDIR"
    # Lets `tree-sitter parse` find the grammar by file extension from any directory.
    printf '{ "parser-directories": ["%s"] }\n' "$ROOT/grammar" >"$TREE_SITTER_DIR/config.json"
    "$TREE_SITTER" --version
    done_step
}

check_generated() {
    step "generated parser is up to date (tree-sitter generate --abi 14; compare with grammar/tree-sitter-apt/src)"
    # grammar.js is evaluated with Node, or with the CLI's own QuickJS where there is no Node
    # (both give the same output).
    local js_runtime=node
    command -v node >/dev/null || js_runtime=native
    (cd "$GRAMMAR" && "$TREE_SITTER" generate --abi 14 --js-runtime "$js_runtime" --output "$SCRATCH/generated")
    local stale=0
    for file in grammar.json node-types.json parser.c tree_sitter/parser.h tree_sitter/alloc.h tree_sitter/array.h; do
        if ! cmp -s "$SCRATCH/generated/$file" "$GRAMMAR/src/$file"; then
            echo "   stale: grammar/tree-sitter-apt/src/$file"
            stale=1
        fi
    done
    ((stale == 0)) || fail "the committed src/ does not match grammar.js: run 'tree-sitter generate --abi 14' in grammar/tree-sitter-apt and commit src/"
    done_step
}

run_tree_sitter_tests() {
    step "tree-sitter test (corpus: test/corpus/*.txt, highlighting: test/highlight/*.apt)"
    (cd "$GRAMMAR" && "$TREE_SITTER" test) || fail "tree-sitter test"
    done_step
}

parse_sources() {
    step "every example, the stdlib, the parse/clean test cases and every apt block of docs/language.md parse without ERROR or MISSING"
    local list="$SCRATCH/sources.txt"
    mkdir -p "$SCRATCH/language-md"
    python3 - "$ROOT/docs/language.md" "$SCRATCH/language-md" <<'PY'
import re, sys
md, out = sys.argv[1], sys.argv[2]
text = open(md, encoding="utf-8").read()
count = 0
for m in re.finditer(r"^```apt[ \t]*\n(.*?)^```", text, re.S | re.M):
    line = text.count("\n", 0, m.start()) + 1
    with open(f"{out}/language.md-line-{line:04d}.apt", "w", encoding="utf-8") as f:
        f.write(m.group(1))
    count += 1
if count == 0:
    sys.exit("no ```apt blocks found in " + md)
print(f"   {count} apt blocks in docs/language.md")
PY
    {
        find "$ROOT/examples" "$ROOT/stdlib" "$ROOT/tests/cases/parse" "$ROOT/tests/cases/clean" -name '*.apt' -type f | sort
        find "$SCRATCH/language-md" -name '*.apt' -type f | sort
    } >"$list"
    echo "   $(wc -l <"$list") files"
    local output="$SCRATCH/parse.txt"
    if ! (cd "$GRAMMAR" && "$TREE_SITTER" parse --quiet --stat --paths "$list") >"$output" 2>&1; then
        cat "$output"
        fail "some files do not parse (see the ERROR/MISSING nodes above)"
    fi
    # Belt and braces: the exit status already says it, but make sure no tree has an error node.
    if grep -E '\((ERROR|MISSING)' "$output"; then
        fail "error nodes in the parse output"
    fi
    grep -E '^Total parses' "$output" | sed 's/^/   /'
    done_step
}

check_neovim_files() {
    step "Neovim runtime files (editors/neovim): the queries link resolves"
    for query in highlights locals folds injections; do
        [[ -f "$ROOT/editors/neovim/queries/apt/$query.scm" ]] ||
            fail "editors/neovim/queries/apt/$query.scm is missing (it links to grammar/tree-sitter-apt/queries)"
    done
    done_step
}

# ------------------------------------------------------------------------------------ VS Code

check_node() {
    command -v node >/dev/null || fail "node is needed for the VS Code extension"
    command -v npm >/dev/null || fail "npm is needed for the VS Code extension"
    local major
    major="$(node -p 'process.versions.node.split(".")[0]')"
    ((major >= MIN_NODE_MAJOR)) || fail "node >= $MIN_NODE_MAJOR is needed (found $(node --version))"
    echo "   node $(node --version), npm $(npm --version)"
}

vscode_extension() {
    step "VS Code extension: npm ci"
    check_node
    # --ignore-scripts: no dependency needs its install script to compile, test or package
    # (esbuild finds its platform binary without it; vsce-sign is only for signing).
    (cd "$VSCODE" && npm ci --ignore-scripts --no-audit --no-fund) || fail "npm ci"
    done_step

    step "VS Code extension: npm run compile (tsc)"
    (cd "$VSCODE" && npm run --silent compile) || fail "npm run compile"
    done_step

    step "VS Code extension: npm run test:unit (node --test)"
    (cd "$VSCODE" && npm run --silent test:unit) || fail "npm run test:unit"
    done_step

    step "VS Code extension: npm run test:grammar (vscode-tmgrammar-test assertions and snapshots, manifest checks)"
    (cd "$VSCODE" && npm run --silent test:grammar) || fail "npm run test:grammar"
    done_step

    step "VS Code extension: npm run package (vsce, into editors/vscode/dist/)"
    rm -f "$VSCODE"/dist/*.vsix
    (cd "$VSCODE" && npm run --silent package) || fail "npm run package"
    local vsix
    vsix="$(ls "$VSCODE"/dist/*.vsix 2>/dev/null | head -n 1 || true)"
    [[ -n "$vsix" ]] || fail "no .vsix in editors/vscode/dist/"
    # The package must hold the bundled client, the grammar, the snippets and the language configuration.
    python3 - "$vsix" <<'PY' || fail "the .vsix is incomplete"
import sys, zipfile
names = set(zipfile.ZipFile(sys.argv[1]).namelist())
needed = ["extension/package.json", "extension/dist/extension.js", "extension/syntaxes/apt.tmLanguage.json",
          "extension/snippets/apt.json", "extension/language-configuration.json"]
missing = [n for n in needed if n not in names]
if missing:
    sys.exit("missing from the .vsix: " + ", ".join(missing))
leaked = sorted(n for n in names if n.startswith(("extension/node_modules/", "extension/src/", "extension/test/")))
if leaked:
    sys.exit("unexpected in the .vsix: " + ", ".join(leaked[:5]))
print(f"   {sys.argv[1]}: {len(names)} entries")
PY
    done_step
}

# ------------------------------------------------------------------------------------ Neovim

# Prints nothing and returns 1 when nvim is missing or older than 0.MIN_NVIM_MINOR.
nvim_is_usable() {
    command -v nvim >/dev/null || return 1
    local version major minor
    version="$(nvim --version | head -n 1 | sed -n 's/^NVIM v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')"
    [[ -n "$version" ]] || return 1
    read -r major minor <<<"$version"
    ((major > 0 || minor >= MIN_NVIM_MINOR))
}

neovim_lsp() {
    step "Neovim >= 0.$MIN_NVIM_MINOR"
    if ! nvim_is_usable; then
        if [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null; then
            echo "   nvim is missing or too old: apt-get install neovim"
            (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq neovim >/dev/null) ||
                fail "apt-get install neovim"
            nvim_is_usable || fail "the installed nvim is older than 0.$MIN_NVIM_MINOR: $(nvim --version | head -n 1)"
        else
            echo "   SKIPPED: no nvim 0.$MIN_NVIM_MINOR+ on PATH, and not root with apt-get to install it;"
            echo "   install Neovim to run the end-to-end test of aptc lsp (editors/neovim/test/lsp_e2e.lua)"
            return 0
        fi
    fi
    echo "   $(command -v nvim): $(nvim --version | head -n 1)"
    done_step

    local aptc
    if [[ -n "${APTC_BIN:-}" ]]; then
        step "aptc binary: APTC_BIN=$APTC_BIN"
        aptc="$APTC_BIN"
    else
        # The aptc the README's test command builds: a plain `cargo build` resolves features
        # without the dev-dependencies and would build much of the workspace again.
        step "aptc binary: cargo test --workspace --no-run (debug)"
        command -v cargo >/dev/null || fail "cargo is needed to build aptc (or set APTC_BIN)"
        (cd "$ROOT" && cargo test --workspace --locked --no-run) || fail "cargo test --workspace --no-run"
        aptc="${CARGO_TARGET_DIR:-$ROOT/target}/debug/aptc"
    fi
    [[ -x "$aptc" ]] || fail "not an executable: $aptc"
    done_step

    step "Neovim's LSP client against aptc lsp: diagnostics, completion, hover (editors/neovim/test/lsp_e2e.lua)"
    # Neovim's LSP log, shada and state go to the scratch directory, not to $HOME; the test copies
    # examples/quickstart into a temporary directory of its own.
    mkdir -p "$SCRATCH/nvim"
    local status=0
    (cd "$ROOT" && XDG_CACHE_HOME="$SCRATCH/nvim/cache" XDG_STATE_HOME="$SCRATCH/nvim/state" \
        XDG_DATA_HOME="$SCRATCH/nvim/data" XDG_CONFIG_HOME="$SCRATCH/nvim/config" \
        APTC_BIN="$aptc" APTC_REPO="$ROOT" \
        timeout "$NVIM_TIMEOUT" nvim --headless -u NONE -i NONE -n \
        -c "luafile editors/neovim/test/lsp_e2e.lua") </dev/null || status=$?
    ((status != 124)) || fail "the Neovim LSP test did not finish within ${NVIM_TIMEOUT}s"
    ((status == 0)) || fail "the Neovim LSP test (exit status $status)"
    done_step
}

# ------------------------------------------------------------------------------------ main

parts=("$@")
((${#parts[@]} > 0)) || parts=(tree-sitter vscode nvim)
for part in "${parts[@]}"; do
    case "$part" in
        tree-sitter)
            install_tree_sitter
            check_generated
            run_tree_sitter_tests
            parse_sources
            check_neovim_files
            ;;
        vscode)
            vscode_extension
            ;;
        nvim)
            neovim_lsp
            ;;
        *)
            fail "unknown part '$part' (expected tree-sitter, vscode or nvim)"
            ;;
    esac
done

printf '\neditors-test: all checks passed (%ds)\n' "$((SECONDS - started))"
