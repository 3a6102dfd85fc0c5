#!/usr/bin/env bash
# scripts/seed-hostile.sh REGDIR PORT OUT — the hostile images of tests/image_hostile.rs in a
# running test registry (scripts/registry.sh start REGDIR PORT).
#
# Builds the layouts with scripts/make-hostile-images.py into OUT (keep OUT apart from
# make-images.py's output: seeding pushes every layout in it), pushes them as
# 127.0.0.1:PORT/test/hostile-<name>:latest, then breaks the blobs listed in OUT/faults.json
# in REGDIR/storage (a flipped byte, a truncated file, a deleted file): a registry refuses a
# blob whose digest is wrong, so the damage is done behind its back, on its filesystem
# storage. Run it as the owner of REGDIR (root under scripts/test.sh); the tests then only
# pull. Running it again on the same registry gives the same result: the broken blobs are
# removed first, so seeding uploads them intact before they are broken again.
set -euo pipefail

die() { printf 'error: %s\n' "$*" >&2; exit 1; }
[ $# -eq 3 ] || { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
regdir=$1 port=$2 out=$3
here=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
storage=$regdir/storage
[ -d "$storage" ] || die "no registry storage $storage (start one with scripts/registry.sh start $regdir $port)"

python3 "$here/make-hostile-images.py" "$out"
python3 "$here/make-hostile-images.py" --forget-faults "$storage" "$out"
"$here/registry.sh" seed "$regdir" "$port" "$out"
python3 "$here/make-hostile-images.py" --apply-faults "$storage" "$out"
