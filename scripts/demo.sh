#!/usr/bin/env bash
# The main job: make a busybox base image, import it into a fresh store, inspect it,
# save it as a docker-archive and an OCI archive, and validate both with skopeo.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
work=.cache/demo
rm -rf "$work"; mkdir -p "$work"
lamina() { .venv/bin/lamina --root "$work/root" "$@"; }
step() { printf '\n==> %s\n' "$*"; }

step "making a busybox rootfs from Debian's busybox-static"
./scripts/make-busybox-rootfs.sh "$work/busybox-rootfs.tar"

step "lamina import -> busybox:latest"
lamina import "$work/busybox-rootfs.tar" busybox:latest --change 'CMD ["sh"]'
lamina images

step "lamina inspect busybox (GraphDriver and RootFS)"
lamina inspect busybox --format json | .venv/bin/python -c '
import json, sys
img = json.load(sys.stdin)[0]
print(json.dumps({k: img[k] for k in ("Id", "RepoTags", "GraphDriver", "RootFS")}, indent=2))'

step "lamina save -> docker-archive and oci-archive"
lamina save -o "$work/busybox.docker.tar" --format docker-archive busybox
lamina save -o "$work/busybox.oci.tar" --format oci-archive busybox

step "skopeo inspect of both archives"
skopeo inspect "docker-archive:$work/busybox.docker.tar" | head -20
skopeo inspect "oci-archive:$work/busybox.oci.tar" --raw | head -c 600; echo

step "round trip: skopeo copy to an OCI layout, load it back, run busybox from the export"
skopeo copy -q "docker-archive:$work/busybox.docker.tar" "oci:$work/layout:busybox"
lamina pull "oci:$work/layout:busybox" --name busybox:roundtrip
lamina export busybox:roundtrip -o "$work/rootfs.tar"
mkdir -p "$work/rootfs" && tar -C "$work/rootfs" -xf "$work/rootfs.tar"
chroot "$work/rootfs" /bin/sh -c 'echo "hello from $(busybox | head -1 | cut -d" " -f1-2)"'
lamina system check
echo; echo "demo: ok"
