#!/usr/bin/env bash
# Builds the supply-chain tools the tests run (cosign, buildkitd + buildctl, kustomize, and oci-registry: an in-memory
# OCI registry with the referrers API) from Go modules, each from its own module under tests/supply/<tool>/ and cached
# in its own folder outside the checkout, so that changing one rebuilds nothing else and a second clone on the same
# machine reuses them. Modelled on tests/cluster/build.sh. Prints the folder of each tool it built (or found built).
# Usage: tests/supply/build.sh [cosign|buildkit|kustomize|registry|all]   (default all)
#        tests/supply/build.sh --print-dir cosign|buildkit|kustomize|registry   (no build)
set -euo pipefail
shopt -s inherit_errexit
here="$(cd "$(dirname "$0")" && pwd)"
tools=(cosign buildkit kustomize registry)
command -v go >/dev/null || { echo "tests/supply/build.sh: no Go toolchain (go) on PATH" >&2; exit 1; }
go_version="$(go env GOVERSION)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/admission"

# The pinned version of a tool: the version its go.mod requires of the module named here.
module_of() {
  case "$1" in
    cosign) echo github.com/sigstore/cosign/v3 ;;
    buildkit) echo github.com/moby/buildkit ;;
    kustomize) echo sigs.k8s.io/kustomize/kustomize/v5 ;;
    registry) echo github.com/google/go-containerregistry ;;
  esac
}
bins_of() {
  case "$1" in
    cosign) echo cosign ;;
    buildkit) echo buildkitd buildctl ;;
    kustomize) echo kustomize ;;
    registry) echo oci-registry ;;
  esac
}
version_of() {
  local module v
  module="$(module_of "$1")"
  v="$(grep -oE "^[[:space:]]*(require[[:space:]]+)?${module//./\\.} v[0-9]+\.[0-9]+\.[0-9]+" "$here/$1/go.mod" | head -1 \
    | awk '{print $NF}' || true)"
  [[ -n "$v" ]] || { echo "no $module version in $here/$1/go.mod" >&2; return 1; }
  echo "$v"
}
# <name>-<version>-<go version>-<hash of go.mod, go.sum and main.go (where the module has one)>
dir_of() {
  local version files=("$here/$1/go.mod" "$here/$1/go.sum")
  version="$(version_of "$1")"
  [[ -f "$here/$1/main.go" ]] && files+=("$here/$1/main.go")
  echo "$cache_root/$1-$version-$go_version-$(cat "${files[@]}" | sha256sum | cut -c1-12)"
}
complete() {
  local b
  for b in $(bins_of "$1"); do [[ -x "$2/$b" ]] || return 1; done
}

# The go build of one tool into $2, with the version stamps its release build sets.
go_build() {
  local version="$3"
  cd "$here/$1" || return 1
  case "$1" in
    cosign)
      CGO_ENABLED=0 go build -trimpath -o "$2/cosign" \
        -ldflags="-s -w -X sigs.k8s.io/release-utils/version.gitVersion=$version -X sigs.k8s.io/release-utils/version.gitTreeState=clean" \
        github.com/sigstore/cosign/v3/cmd/cosign ;;
    buildkit)
      # CGO_ENABLED=0 and the tags of buildkit's own Dockerfile (its release binaries are static builds too).
      local ldflags="-s -w -X github.com/moby/buildkit/version.Version=$version -X github.com/moby/buildkit/version.Package=github.com/moby/buildkit"
      CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -tags 'osusergo netgo static_build seccomp grpcnotrace' \
        -o "$2/buildkitd" github.com/moby/buildkit/cmd/buildkitd &&
      CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -tags grpcnotrace -o "$2/buildctl" github.com/moby/buildkit/cmd/buildctl ;;
    kustomize)
      # `kustomize version` reads its version from the binary's build info (the module's version as a dependency).
      # Pinned to v5.8.2 in kustomize/go.mod: v5.8.3, the newest the module proxy serves, declares `go 1.27.0`, which
      # Go 1.26.x (GOTOOLCHAIN=local) refuses to build; v5.8.2 (go 1.26.0) is the newest release it builds.
      CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$2/kustomize" sigs.k8s.io/kustomize/kustomize/v5 ;;
    registry)
      CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$2/oci-registry" . ;;
  esac
}

tmp=""
trap '[[ -z "$tmp" ]] || rm -rf "$tmp"' EXIT
build() {
  local tool="$1" dir version start
  dir="$(dir_of "$tool")"
  version="$(version_of "$tool")"
  if complete "$tool" "$dir"; then echo "$dir"; return 0; fi
  mkdir -p "$cache_root"
  tmp="$(mktemp -d "$cache_root/.build-$tool-XXXXXX")"
  start=$SECONDS
  echo "building $tool $version ($(bins_of "$tool")) with $go_version ..." >&2
  if ! ( go_build "$tool" "$tmp" "$version" ) >&2; then
    echo "build of $tool $version failed after $((SECONDS - start)) s (go build output above)" >&2
    exit 1
  fi
  echo "built $tool $version in $((SECONDS - start)) s" >&2
  # Atomic: a rename of a complete directory; a concurrent build that lost the race leaves the winner's in place.
  if ! mv -T "$tmp" "$dir" 2>/dev/null; then
    rm -rf "$tmp"
    complete "$tool" "$dir" || { echo "could not place $dir" >&2; exit 1; }
  fi
  tmp=""
  echo "$dir"
}

usage="usage: $0 [cosign|buildkit|kustomize|registry|all] | --print-dir cosign|buildkit|kustomize|registry"
known() { [[ " ${tools[*]} " == *" $1 "* ]]; }
case "${1:-all}" in
  --print-dir)
    known "${2:-}" || { echo "$usage" >&2; exit 2; }
    dir_of "$2" ;;
  all)
    for t in "${tools[@]}"; do build "$t"; done ;;
  *)
    known "$1" || { echo "$usage" >&2; exit 2; }
    build "$1" ;;
esac
