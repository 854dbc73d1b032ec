#!/usr/bin/env bash
# The main job: build the seed example image and run it, daemonlessly.
#   1. a busybox base image from Debian's busybox-static (lamina import)
#   2. lamina build of: FROM busybox / COPY a.txt /a.txt / CMD ["cat", "/a.txt"]
#   3. lamina run --rm of the image (prints the file)
#   4. the union-filesystem walkthrough: run -d, exec writes a file, inspect shows the
#      GraphDriver dirs, the file is in UpperDir and MergedDir, diff lists it
#   5. save as docker-archive and validate with skopeo
set -euo pipefail
cd "$(dirname "$0")/.."
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
work=.cache/demo
if [ -d "$work/root" ]; then .venv/bin/lamina --root "$work/root" rm -f walkthrough >/dev/null 2>&1 || true; fi
rm -rf "$work"; mkdir -p "$work/ctx"
lamina() { .venv/bin/lamina --root "$work/root" "$@"; }
step() { printf '\n==> %s\n' "$*"; }

step "making a busybox base image from Debian's busybox-static"
./scripts/make-busybox-rootfs.sh "$work/busybox-rootfs.tar"
lamina import "$work/busybox-rootfs.tar" busybox:latest --change 'CMD ["sh"]'

step "lamina build -t seed (the seed Dockerfile)"
printf 'This is a simple file.\n' > "$work/ctx/a.txt"
printf 'FROM busybox\nCOPY a.txt /a.txt\nCMD ["cat", "/a.txt"]\n' > "$work/ctx/Dockerfile"
cat "$work/ctx/Dockerfile"
lamina build -t seed --progress plain "$work/ctx"
lamina images

step "lamina run --rm seed"
lamina run --rm seed

step "walkthrough: a detached container, a write, and where it lands"
lamina run -d --name walkthrough seed sleep 300
lamina exec walkthrough sh -c 'touch /TEST && echo "Hello World" >> /TEST'
upper=$(lamina inspect -f '{{.GraphDriver.Data.UpperDir}}' walkthrough)
merged=$(lamina inspect -f '{{.GraphDriver.Data.MergedDir}}' walkthrough)
lamina inspect -f '{{json .GraphDriver}}' walkthrough | .venv/bin/python -m json.tool
echo "UpperDir/TEST:  $(cat "$upper/TEST")"
echo "MergedDir/TEST: $(cat "$merged/TEST")"
echo "lower file:     $(cat "$(dirname "$upper")/lower")"
echo "lamina diff walkthrough:"; lamina diff walkthrough
lamina rm -f walkthrough

step "lamina save -> docker-archive, validated by skopeo"
lamina save -o "$work/seed.tar" seed
skopeo inspect "docker-archive:$work/seed.tar" | head -12
lamina system check
echo; echo "demo: ok"
