#!/usr/bin/env bash
# Build the seed example (FROM busybox / COPY a.txt / CMD cat) and run its CMD.
# usage: demo-build.sh [ROOT]   (default: a fresh temporary store, removed afterwards)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
py="$repo/.venv/bin/python"; [ -x "$py" ] || py=python3
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
root=${1:-$work/root}
lamina() { "$py" -m lamina --root "$root" "$@"; }
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
"$repo/scripts/make-busybox-rootfs.sh" "$work/busybox.tar"
lamina import "$work/busybox.tar" busybox >/dev/null
mkdir "$work/ctx"
printf 'This is a simple file.\n' > "$work/ctx/a.txt"
printf 'FROM busybox\nCOPY a.txt /a.txt\nCMD ["cat", "/a.txt"]\n' > "$work/ctx/Dockerfile"
echo "+ lamina build -t seed $work/ctx" >&2
lamina build -t seed --progress plain "$work/ctx"
# Run the image's CMD on its exported rootfs (lamina run replaces this once it lands).
mkdir "$work/rootfs"
lamina export seed | tar -x -C "$work/rootfs"
cmd=$(lamina inspect --format '{{json .Config.Cmd}}' seed | "$py" -c 'import json,sys; print(" ".join(json.load(sys.stdin)))')
echo "+ chroot rootfs $cmd" >&2
# shellcheck disable=SC2086
chroot "$work/rootfs" $cmd
