#!/usr/bin/env bash
# Measures which source files and packages one auto-approved request runs
# through, and how often each named block runs per request:
#   internal/pathtrace/pathtrace.sh [pattern-of-blocks-to-count ...]
# It runs TestPath with 1 and with 11 requests under a coverage profile; a
# block counts as on the path when it ran at least 10 times more in the
# second run (once per request); idle loops run by the clock in both.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for n in 1 11; do
  WRIT_PATHTRACE=$n go test ./internal/pathtrace -run TestPath -count=1 \
    -covermode=atomic -coverpkg=github.com/writ-dev/writ/... \
    -coverprofile="$tmp/$n.out" >/dev/null
done
python3 - "$tmp/1.out" "$tmp/11.out" "$@" <<'PY'
import sys, collections
def load(p):
    c = collections.Counter()
    for l in open(p):
        if l.startswith("mode:"): continue
        block, _, n = l.rsplit(" ", 2)
        c[block.replace("github.com/writ-dev/writ/", "")] += int(n)
    return c
a, b = load(sys.argv[1]), load(sys.argv[2])
runs = 10
path = {k: (b[k] - a[k]) / runs for k in b if b[k] - a[k] >= runs}
skip = ("internal/writtest/", "internal/pathtrace/")
files = sorted({k.split(":")[0] for k in path if not k.startswith(skip)})
pkgs = sorted({f.rsplit("/", 1)[0] for f in files})
print(f"files on an auto-approved request's path: {len(files)}, in {len(pkgs)} packages")
for f in files: print("  " + f)
for pat in sys.argv[3:]:
    for k in sorted(path):
        if pat in k: print(f"block {k}: {path[k]:.1f} per request")
PY
