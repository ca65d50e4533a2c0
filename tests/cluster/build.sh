#!/usr/bin/env bash
# Builds the control plane the tests run (kube-apiserver, kube-controller-manager, kubectl, etcd) from Go
# modules, and caches the binaries outside the checkout so that a second clone on the same machine reuses them.
# Prints the directory that holds them. Usage: tests/cluster/build.sh [--print-dir | --print-helm-dir]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
k8s_version="$(grep -oE 'k8s\.io/kubernetes v[0-9]+\.[0-9]+\.[0-9]+' "$here/k8s/go.mod" | head -1 | cut -d' ' -f2)"
[[ -n "$k8s_version" ]] || { echo "no k8s.io/kubernetes version in $here/k8s/go.mod" >&2; exit 1; }
go_version="$(go env GOVERSION)"
sum_hash="$(cat "$here/k8s/go.mod" "$here/k8s/go.sum" "$here/etcd/go.mod" "$here/etcd/go.sum" "$here/etcd/main.go" \
  | sha256sum | cut -c1-12)"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/admission"
dir="$cache_root/k8s-$k8s_version-$go_version-$sum_hash"
if [[ "${1:-}" == "--print-dir" ]]; then echo "$dir"; exit 0; fi

# The helm CLI (v3: its upgrade is the client-side 3-way merge) for tests/cluster/test_certificates.py, from its own
# go.mod under helm/ and in its own cache folder, so that changing it rebuilds nothing else.
helm_version="$(grep -oE 'helm\.sh/helm/v3 v[0-9.]+' "$here/helm/go.mod" | head -1 | cut -d' ' -f2)"
helm_dir="$cache_root/helm-$helm_version-$go_version-$(cat "$here/helm/go.mod" "$here/helm/go.sum" | sha256sum | cut -c1-12)"
if [[ "${1:-}" == "--print-helm-dir" ]]; then echo "$helm_dir"; exit 0; fi
if [[ ! -x "$helm_dir/helm" ]]; then
  mkdir -p "$cache_root"
  helm_tmp="$(mktemp -d "$cache_root/.build-helm-XXXXXX")"
  ( cd "$here/helm" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" \
      -o "$helm_tmp/helm" helm.sh/helm/v3/cmd/helm ) >&2
  mv -T "$helm_tmp" "$helm_dir" 2>/dev/null || { rm -rf "$helm_tmp"; [[ -x "$helm_dir/helm" ]]; }
  echo "built helm $helm_version" >&2
fi
bins=(kube-apiserver kube-controller-manager kubectl etcd)
complete() { for b in "${bins[@]}"; do [[ -x "$dir/$b" ]] || return 1; done; }
if complete; then echo "$dir"; exit 0; fi

mkdir -p "$cache_root"
tmp="$(mktemp -d "$cache_root/.build-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
# Version stamps as the release build sets them, so /version and `kubectl version` name the real release.
pkg=k8s.io/component-base/version
IFS=. read -r major minor _ <<<"${k8s_version#v}"
ldflags="-s -w -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$k8s_version"
start=$SECONDS
( cd "$here/k8s" && CGO_ENABLED=0 go build -trimpath -ldflags="$ldflags" -o "$tmp/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl ) >&2
( cd "$here/etcd" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$tmp/etcd" . ) >&2
echo "built ${bins[*]} in $((SECONDS - start)) s" >&2
# Atomic: a rename of a complete directory; a concurrent build that lost the race leaves the winner's in place.
if ! mv -T "$tmp" "$dir" 2>/dev/null; then complete || { echo "could not place $dir" >&2; exit 1; }; fi
trap - EXIT
echo "$dir"
