#!/usr/bin/env python3
"""check_layers — the include graph of src/ against the layer table.

The layer order is written once, in the "## Layers" table of
docs/ARCHITECTURE.md (columns: layer, folder(s) in backticks, library,
"may include": the layers below it a file of this layer may include). This
script reads that table, every `#include "..."` under src/, and fails on an
include from a layer to one it may not include (upward or sideways) and on
any include cycle between files. Headers not in the repository (generated
protobuf-c code, system headers) are ignored.

usage: tools/check_layers.py [REPO_ROOT]   (exit 0 clean, 1 violations)
"""
import os
import re
import sys

# Includes that break the order today, each with the reason; an entry here
# that no longer occurs is itself an error, so the list only shrinks.
KNOWN = {
    # the CLI files src/cli/CMakeLists.txt grants one lower layer's headers
    ("src/cli/cli_tokenize.c", "src/host/tokenizer/tokenizer.h"): "tokenize runs the tokenizer alone",
    ("src/cli/cli_calibrate.c", "src/host/models/pins.h"): "calibrate re-pins the router files",
}


def parse_layers(root):
    text = open(os.path.join(root, "docs/ARCHITECTURE.md"), encoding="utf-8").read()
    sec = text.split("\n## Layers\n", 1)
    if len(sec) != 2:
        sys.exit("check_layers: docs/ARCHITECTURE.md has no '## Layers' section")
    layers, folders = {}, []
    for line in sec[1].split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or cells[0] in ("layer", "") or set(cells[0]) <= set("-"):
            continue
        name = cells[0]
        allowed = {a.split("(")[0].strip() for a in cells[3].split(",")} - {"nothing of ours", ""}
        layers[name] = allowed
        for f in re.findall(r"`([^`]+/)`", cells[1]):
            folders.append((f, name))
    if not layers:
        sys.exit("check_layers: empty layer table")
    for name, allowed in layers.items():
        for a in allowed:
            if a not in layers:
                sys.exit(f"check_layers: layer {name} may include unknown layer {a!r}")
    return layers, sorted(folders, key=lambda x: -len(x[0]))


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), ".."))
    layers, folders = parse_layers(root)
    files = []
    for d, _, names in os.walk(os.path.join(root, "src")):
        for n in names:
            if n.endswith((".c", ".h", ".cu", ".cuh")):
                files.append(os.path.relpath(os.path.join(d, n), root))
    by_name = {}
    for f in files:
        by_name.setdefault(os.path.basename(f), []).append(f)

    def layer_of(f):
        for prefix, name in folders:
            if f.startswith(prefix):
                return name
        return None

    errors, seen_known, graph = [], set(), {}
    for f in sorted(files):
        lf = layer_of(f)
        if lf is None:
            errors.append(f"{f}: in no layer's folder (docs/ARCHITECTURE.md, ## Layers)")
            continue
        graph[f] = []
        for m in re.finditer(r'^\s*#\s*include\s+"([^"]+)"', open(os.path.join(root, f), encoding="utf-8").read(), re.M):
            inc = m.group(1)
            local = os.path.normpath(os.path.join(os.path.dirname(f), inc))
            cands = [local] if local in files else by_name.get(os.path.basename(inc), [])
            if not cands:
                continue  # generated or external
            if len(cands) > 1:
                errors.append(f"{f}: #include \"{inc}\" is ambiguous: {', '.join(cands)}")
                continue
            t = cands[0]
            graph[f].append(t)
            lt = layer_of(t)
            if lt == lf or lt in layers[lf]:
                continue
            if (f, t) in KNOWN:
                seen_known.add((f, t))
                continue
            errors.append(f"{f} ({lf}) includes {t} ({lt}): {lf} may include only "
                          f"{', '.join(sorted(layers[lf])) or 'its own layer'}")
    for k in set(KNOWN) - seen_known:
        errors.append(f"known exception {k[0]} -> {k[1]} no longer occurs: remove it from KNOWN")
    # include cycles between files (iterative DFS)
    state = {}
    for start in graph:
        if state.get(start):
            continue
        stack = [(start, iter(graph[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                errors.append("include cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(graph.get(nxt, []))))
                path.append(nxt)
    for e in errors:
        print("check_layers:", e, file=sys.stderr)
    if errors:
        return 1
    print(f"check_layers: {len(files)} files, {sum(map(len, graph.values()))} includes, "
          f"{len(layers)} layers: in order ({len(KNOWN)} known exception(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
