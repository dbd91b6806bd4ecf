#!/usr/bin/env bash
# Regenerates crates/aura-cli/sensor.order: the functions `aura sensor` runs, from start through steady state,
# hottest first. The link (crates/aura-cli/build.rs) places them first and together in `.text`, so the pages a
# sensor keeps resident are few and dense instead of one 64 KiB fault-around window per scattered function.
# Symbols are matched by their mangled names, which stay stable across source edits (their hashes come from the
# crate's metadata and the item's path and type); a dependency upgrade or a new rustc makes some stale, and stale
# names are skipped by the linker. Re-run after such changes and compare `aura bench sensor` before and after.
# Usage: scripts/sensor-symbol-order.sh   (env: AURA=target/release/aura, SECONDS_RUN=25)
set -euo pipefail
cd "$(dirname "$0")/.."
AURA=${AURA:-target/release/aura}
RUN=${SECONDS_RUN:-25}
OUT=crates/aura-cli/sensor.order
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian package valgrind)" >&2; exit 1; }
nm "$AURA" 2>/dev/null | grep ' T main$' >/dev/null \
  || { echo "$AURA has no symbol table; build with the release profile (strip = \"debuginfo\")" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
env -u AURA_CONFIG AURA_LOG=warn timeout -s INT "$RUN" valgrind --tool=callgrind --demangle=no \
  --callgrind-out-file="$tmp/cg.out" "$AURA" sensor --interval 1 --asset-id order-probe \
  --dir "$tmp/sensor" --data-dir "$tmp" >/dev/null 2>"$tmp/valgrind.log" || true
[ -s "$tmp/cg.out" ] || { cat "$tmp/valgrind.log" >&2; exit 1; }
python3 - "$tmp/cg.out" "$(readlink -f "$AURA")" "$OUT" <<'PY'
import re, sys
path, binary, out = sys.argv[1:4]
names, objs, cost = {}, {}, {}
ob = fn = None
skip = False
for line in open(path, errors="replace"):
    if line.startswith("calls="):
        skip = True  # the next cost line is the call's inclusive cost, not the caller's own
        continue
    m = re.match(r"(c?)(ob|fl|fi|fe|fn)=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
    if m:
        callee, kind, ident, name = m.groups()
        table = objs if kind == "ob" else names if kind == "fn" else None
        if table is not None and name:
            table[ident] = name
        if not callee and kind == "ob":
            ob = objs.get(ident)
        elif not callee and kind == "fn":
            fn = (ob, names.get(ident))
        continue
    if fn and (line[:1].isdigit() or line[:1] in "+-*"):
        if skip:
            skip = False
            continue
        parts = line.split()
        if len(parts) >= 2 and fn[0] == binary:
            try:
                cost[fn[1]] = cost.get(fn[1], 0) + int(parts[1])
            except ValueError:
                pass
syms = [s for s, _ in sorted(cost.items(), key=lambda kv: -kv[1]) if s and not s.startswith("0x")]
with open(out, "w") as f:
    f.write("".join(s + "\n" for s in syms))
print(f"{len(syms)} functions of {binary} written to {out}")
PY
