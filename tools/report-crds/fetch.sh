#!/usr/bin/env bash
# Copies the PolicyReport CRDs the chart can install (audit.reportCRDs.install) from the Go modules pinned in go.mod:
# `go mod download` fetches them through the module proxy and go.sum verifies them. The copies are committed, so
# rendering the chart needs neither Go nor the network. Usage: tools/report-crds/fetch.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/../../charts/admission/files/report-crds"
dir_of() { (cd "$here" && GOFLAGS=-mod=mod go mod download -json "$1") | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'; }
version_of() { (cd "$here" && GOFLAGS=-mod=mod go list -m -f '{{.Version}}' "$1"); }

openreports="$(dir_of github.com/openreports/reports-api)"
wgpolicy="$(dir_of sigs.k8s.io/wg-policy-prototypes)"
[[ -d "$openreports" && -d "$wgpolicy" ]] || { echo "go mod download gave no module folder" >&2; exit 1; }

copy() {  # copy SOURCE_FILE DEST_FOLDER MODULE
  local name; name="$(basename "$1")"
  mkdir -p "$2"
  { echo "# From $3@$(version_of "$3"), ${1#*@*/} (fetched by tools/report-crds/fetch.sh; do not edit)"
    cat "$1"; } >"$2/$name"
}
rm -rf "$out"
for f in "$wgpolicy"/policy-report/crd/v1alpha2/wgpolicyk8s.io_{policyreports,clusterpolicyreports}.yaml; do
  copy "$f" "$out/wgpolicyk8s.io" sigs.k8s.io/wg-policy-prototypes
done
for f in "$openreports"/config/crd/openreports.io_{reports,clusterreports}.yaml; do
  copy "$f" "$out/openreports.io" github.com/openreports/reports-api
done
find "$out" -name '*.yaml' | sort
