#!/usr/bin/env bash
# Cross-implementation check: loaderd writes cache shards (Go, arrow-go),
# Arrow JS (apache-arrow on Node) opens them and checks them against SPEC §4.
#
#   examples/arrowjs/run.sh            # from anywhere; needs go, node >= 20, npm
#
# 1. builds loaderd;
# 2. `loaderd demo` generates a 64-image sample dataset in $D/data and caches
#    uint8 [224,224,3] epochs into $D/cache;
# 3. `loaderd precompute` caches two float32 [3,32,32] (normalize) epochs of
#    the same data into $D/cache-f32, in shards of 24 (so a partial last shard)
#    with a seed above 2^53;
# 4. npm ci, the checker's own tests, then check-shards.mjs on both caches.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
export CGO_CFLAGS="${CGO_CFLAGS:--Wno-deprecated-declarations}"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
D="$tmp/demo"

go build -o "$tmp/loaderd" ./cmd/loaderd
"$tmp/loaderd" demo --dir "$D" --images 64 --listen 127.0.0.1:0
"$tmp/loaderd" precompute --data "sample=$D/data" --cache-dir "$D/cache-f32" \
  --pipeline 'random_resized_crop(size=32)|hflip(p=0.5)|normalize(mean=0.485,0.456,0.406,std=0.229,0.224,0.225)' \
  --epochs 0-1 --shard-size 24 --seed 12345678901234567890 --log-level warn

npm ci --prefix "$here" --no-audit --no-fund --loglevel=error
node --test "$here/"
node "$here/check-shards.mjs" "$D/cache"
node "$here/check-shards.mjs" "$D/cache-f32"
echo "arrowjs: ok"
