#!/usr/bin/env bash
# The base image the image tests build on (tests/image/): Debian bookworm from Debian's own packages
# (`debootstrap --variant=minbase` plus python3, python3-venv and python3-pip), for linux/amd64 and linux/arm64, as an
# OCI layout tagged `bookworm`, cached outside the checkout like the control-plane binaries, in a folder keyed by this
# script and the mirror (so editing either builds a new one, and a second clone on the same machine reuses it).
# The tests push it to their loopback registry and pass it to `make image` as PYTHON_IMAGE.
#
# The build machine's own architecture gets a full debootstrap (maintainer scripts run in a chroot). Another
# architecture gets debootstrap's first stage (`--foreign`: its packages fetched and the essential ones unpacked) and
# the rest of its packages unpacked the same way, because its second stage runs the target's binaries, which needs an
# emulator; nothing of the image build runs on the target, so unpacked files are all it needs. base-passwd's
# /etc/passwd and /etc/group are copied as its maintainer script would on a fresh install.
#
# Usage: tests/image/base.sh [--print-dir]   prints the folder whose layout/ holds the image.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
suite=bookworm
packages=python3,python3-venv,python3-pip
arches=(amd64 arm64)
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/admission"
key="$( { cat "$here/base.sh"; echo "$mirror"; } | sha256sum | cut -c1-12)"
dir="$cache_root/base-debian-$suite-python3-$key"
if [[ "${1:-}" == "--print-dir" ]]; then echo "$dir"; exit 0; fi
if [[ -f "$dir/layout/index.json" ]]; then echo "$dir"; exit 0; fi

for tool in debootstrap umoci dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "tests/image/base.sh: $tool is not installed (make test installs it)" >&2; exit 1; }
done
[[ "$(id -u)" == 0 ]] || { echo "tests/image/base.sh: debootstrap needs root" >&2; exit 1; }
native="$(dpkg --print-architecture)"
mkdir -p "$cache_root"
tmp="$(mktemp -d "$cache_root/.build-base-XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
start=$SECONDS
umoci init --layout "$tmp/layout"
members=()
for arch in "${arches[@]}"; do
  rootfs="$tmp/rootfs-$arch"
  step=$SECONDS
  if [[ "$arch" == "$native" ]]; then
    debootstrap --variant=minbase --include="$packages" --arch="$arch" "$suite" "$rootfs" "$mirror" >"$tmp/debootstrap-$arch.log" 2>&1 \
      || { tail -20 "$tmp/debootstrap-$arch.log" >&2; exit 1; }
  else
    debootstrap --foreign --variant=minbase --include="$packages" --arch="$arch" "$suite" "$rootfs" "$mirror" \
      >"$tmp/debootstrap-$arch.log" 2>&1 || { tail -20 "$tmp/debootstrap-$arch.log" >&2; exit 1; }
    while read -r _ deb; do
      dpkg-deb --fsys-tarfile "$rootfs$deb" | tar -C "$rootfs" --keep-directory-symlink -xf -
    done <"$rootfs/debootstrap/debpaths"
    for file in passwd group; do
      [[ -e "$rootfs/etc/$file" ]] || cp "$rootfs/usr/share/base-passwd/$file.master" "$rootfs/etc/$file"
    done
    rm -rf "$rootfs/debootstrap"
  fi
  # Nothing may stay mounted in the tree before anything in it is removed.
  if grep -qF " $rootfs/" /proc/mounts; then echo "tests/image/base.sh: $rootfs still has mounts" >&2; exit 1; fi
  # What an image does not carry: downloaded packages, package lists, logs, and the contents of the mount points.
  # The first stage links proc to the host's /proc: each is emptied with `find -delete`, which follows no link.
  for path in var/cache/apt/archives var/lib/apt/lists var/log dev proc sys run tmp; do
    if [[ -L "$rootfs/$path" ]]; then rm -f "$rootfs/$path" && mkdir -m 0555 "$rootfs/$path"; continue; fi
    find "$rootfs/$path" -mindepth 1 -delete
  done
  tar -C "$rootfs" --numeric-owner --sort=name -cf "$tmp/rootfs-$arch.tar" .
  rm -rf "$rootfs"
  umoci new --image "$tmp/layout:$arch"
  # "umoci raw ..." is a history entry image-provenance recognises; the comment says what made the tarball.
  umoci raw add-layer --image "$tmp/layout:$arch" --history.created_by "umoci raw add-layer rootfs-$arch.tar" \
    --history.comment "debootstrap --variant=minbase --include=$packages $suite ($arch)" "$tmp/rootfs-$arch.tar"
  umoci config --image "$tmp/layout:$arch" --os linux --architecture "$arch" \
    --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --config.env LANG=C.UTF-8 \
    --config.cmd python3 --history.created_by "umoci config"
  rm -f "$tmp/rootfs-$arch.tar"
  members+=("$arch")
  echo "base $suite $arch: $((SECONDS - step)) s" >&2
done
umoci gc --layout "$tmp/layout"
# The multi-platform index, tagged `bookworm`, beside the per-architecture tags.
python3 - "$tmp/layout" "$suite" "${members[@]}" <<'EOF'
import hashlib, json, sys
from pathlib import Path

layout, tag, arches = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
index = json.loads((layout / "index.json").read_text())
by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
manifests = [{"mediaType": by_tag[a]["mediaType"], "digest": by_tag[a]["digest"], "size": by_tag[a]["size"],
              "platform": {"os": "linux", "architecture": a}} for a in arches]
body = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                   "manifests": manifests}, sort_keys=True).encode()
digest = hashlib.sha256(body).hexdigest()
(layout / "blobs" / "sha256" / digest).write_bytes(body)
index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json", "digest": f"sha256:{digest}",
                           "size": len(body), "annotations": {"org.opencontainers.image.ref.name": tag}})
(layout / "index.json").write_text(json.dumps(index))
EOF
echo "built the $suite base (${arches[*]}) in $((SECONDS - start)) s" >&2
# Atomic: a rename of a complete directory; a concurrent build that lost the race leaves the winner's in place.
if ! mv -T "$tmp" "$dir" 2>/dev/null; then [[ -f "$dir/layout/index.json" ]] || { echo "could not place $dir" >&2; exit 1; }; fi
trap - EXIT
rm -f "$dir"/debootstrap-*.log
echo "$dir"
