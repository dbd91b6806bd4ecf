#!/usr/bin/env bash
# Regenerates crates/aura-cli/sensor.order: the functions `aura sensor` runs, from start through steady state,
# hottest first. The link (crates/aura-cli/build.rs) places them first and together in `.text`, so the pages a
# sensor keeps resident are few and dense instead of one 64 KiB fault-around window per scattered function.
# Symbols are matched by their mangled names, which stay stable across source edits (their hashes come from the
# crate's metadata and the item's path and type); a dependency upgrade or a new rustc makes some stale, and stale
# names are skipped by the linker. Re-run after such changes and compare `aura bench sensor` before and after.
# Run it on a release binary linked without the current order (`AURA_LINK_ORDER=0 cargo build --release -p
# aura-cli`): valgrind maps symbols only inside `.text`, not in the `.text.sensor` section the order creates.
# Usage: scripts/sensor-symbol-order.sh   (env: AURA=target/release/aura, SECONDS_RUN=25)
set -euo pipefail
cd "$(dirname "$0")/.."
AURA=${AURA:-target/release/aura}
RUN=${SECONDS_RUN:-25}
OUT=crates/aura-cli/sensor.ld
ORDER=crates/aura-cli/sensor.order
command -v valgrind >/dev/null || { echo "valgrind is needed (Debian package valgrind)" >&2; exit 1; }
nm "$AURA" 2>/dev/null | grep ' T main$' >/dev/null \
  || { echo "$AURA has no symbol table; build with the release profile (strip = \"debuginfo\")" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
env -u AURA_CONFIG AURA_LOG=warn timeout -s INT "$RUN" valgrind --tool=callgrind --demangle=no \
  --callgrind-out-file="$tmp/cg.out" "$AURA" sensor --interval 1 --asset-id order-probe \
  --dir "$tmp/sensor" --data-dir "$tmp" >/dev/null 2>"$tmp/valgrind.log" || true
[ -s "$tmp/cg.out" ] || { cat "$tmp/valgrind.log" >&2; exit 1; }
if grep -q '^cob=([0-9]*) ???$' "$tmp/cg.out" && readelf -S "$AURA" | grep '\.text\.sensor' >/dev/null; then
  echo "$AURA was linked with sensor.ld: relink it with AURA_LINK_ORDER=0 first" >&2; exit 1
fi
nm --defined-only "$AURA" | awk '$2 ~ /^[tTwW]$/ {print $3}' >"$tmp/names"
python3 - "$tmp/cg.out" "$(readlink -f "$AURA")" "$OUT" "$ORDER" "$tmp/names" <<'PY'
import re, sys
path, binary, out, order, names_path = sys.argv[1:6]
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

def pattern(sym):
    """A section pattern that survives a rebuild: the hashes in Rust symbol names change with the crate's metadata
    (a dependency or feature change reaches every dependent), the names themselves do not."""
    sym = re.sub(r"\.llvm\.\d+$", "", sym)
    if sym.startswith("_ZN"):
        return re.sub(r"17h[0-9a-f]{16}E$", "17h*E", sym) + "*"
    if sym.startswith("_R"):
        return re.sub(r"Cs[0-9A-Za-z]+_", "Cs*_", sym) + "*"
    return sym

# A pattern that matches one function of the binary goes in the linker script; one that matches many (the
# instances of a generic function, `try_fold`, `drop_in_place`…) would drag them all in, so those functions are
# listed by their exact names for --symbol-ordering-file, which sorts them to the start of `.text`, right after
# `.text.sensor`. Exact names go stale when hashes change; the patterns do not.
matches = {}
for name in open(names_path).read().split():
    matches[pattern(name)] = matches.get(pattern(name), 0) + 1
seen, pats, exact = set(), [], []
for s in syms:
    p = pattern(s)
    if matches.get(p, 0) > 1 or not re.fullmatch(r"[A-Za-z0-9_$.*]+", p):
        exact.append(s)
    elif p not in seen:
        seen.add(p)
        pats.append(p)
with open(order, "w") as f:
    f.write("".join(s + "\n" for s in exact))
with open(out, "w") as f:
    f.write("/* Written by scripts/sensor-symbol-order.sh: the functions `aura sensor` runs, hottest first, placed\n"
            "   before the rest of .text (see crates/aura-cli/build.rs). Patterns, so crate hashes may change. */\n")
    f.write("SECTIONS\n{\n  .text.sensor : {\n")
    for p in pats:
        f.write(f"    *(.text.{p})\n")
    f.write("  }\n}\nINSERT BEFORE .text;\n")
print(f"{len(pats)} function patterns written to {out}, {len(exact)} generic instances to {order}")
PY
