#!/usr/bin/env python3
"""check_layers.py — the dependency direction of cmoe's layers, checked in sources and CMake.

One statement of the allowed direction (docs/architecture.md shows the same table):

    core <- autograd <- parallel <- moe <- moe/train <- launch
    data, checkpoint: on core only

A layer may include headers from, and link the targets of, itself and the layers it lists
below. The check fails, naming file and line, when an `#include "LAYER/..."` or a
`target_link_libraries` entry crosses the direction. tests/ and bench/ may use everything.

Usage: check_layers.py [ROOT]       check the tree at ROOT (default: this repository)
       check_layers.py --self-test  show that a crossing include and a crossing link fail
"""
import os
import re
import sys
import tempfile

# layer folder -> (CMake targets it defines, layers it may depend on besides itself)
LAYERS = {
    "core": ({"cmoe_core", "cmoe_cuda"}, []),
    "autograd": ({"cmoe_autograd"}, ["core"]),
    "parallel": ({"cmoe_parallel"}, ["autograd", "core"]),
    "data": ({"cmoe_data"}, ["core"]),
    "checkpoint": ({"cmoe_checkpoint"}, ["core"]),
    "moe": ({"cmoe_moe"}, ["parallel", "autograd", "core"]),
    "moe/train": ({"cmoe_train"}, ["moe", "parallel", "data", "checkpoint", "autograd", "core"]),
    "launch": ({"cmoe"}, ["moe/train", "moe", "parallel", "data", "checkpoint", "autograd", "core"]),
}
# Targets every layer may link: build settings and wrappers of third-party libraries.
NEUTRAL = {"cmoe_warnings", "cmoe_nccl"}


def layer_of(rel):
    """The layer a path (relative to the root) belongs to: the longest matching folder."""
    best = None
    for name in LAYERS:
        if rel == name or rel.startswith(name + "/"):
            if best is None or len(name) > len(best):
                best = name
    return best


def allowed(layer):
    return {layer} | set(LAYERS[layer][1])


INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
LINK = re.compile(r"target_link_libraries\s*\(\s*(\S+)([^)]*)\)", re.S)


def check(root):
    problems = []
    for layer in LAYERS:
        top = os.path.join(root, layer)
        for dirpath, dirnames, files in os.walk(top):
            rel_dir = os.path.relpath(dirpath, root)
            if layer_of(rel_dir) != layer:  # a nested layer (moe/train inside moe) is checked on its own
                dirnames[:] = []
                continue
            for f in sorted(files):
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, root)
                if f.endswith((".h", ".cpp", ".cu", ".cuh", ".proto")):
                    with open(path, encoding="utf-8", errors="replace") as fh:
                        for n, line in enumerate(fh, 1):
                            m = INCLUDE.match(line) or re.match(r'^\s*import\s+"([^"]+)"', line)
                            if not m:
                                continue
                            target = layer_of(os.path.dirname(m.group(1)))
                            if target is not None and target not in allowed(layer):
                                problems.append(f"{rel}:{n}: layer {layer} includes {m.group(1)} "
                                                f"(layer {target}); {layer} may use {sorted(allowed(layer))}")
                elif f == "CMakeLists.txt":
                    text = open(path, encoding="utf-8").read()
                    for m in LINK.finditer(text):
                        line = text[: m.start()].count("\n") + 1
                        for lib in re.findall(r"\bcmoe_\w+|\bcmoe\b", m.group(2)):
                            if lib in NEUTRAL:
                                continue
                            owner = next((l for l, (targets, _) in LAYERS.items() if lib in targets), None)
                            if owner is None:
                                problems.append(f"{rel}:{line}: links unknown cmoe target {lib}")
                            elif owner not in allowed(layer):
                                problems.append(f"{rel}:{line}: layer {layer} links {lib} (layer {owner}); "
                                                f"{layer} may use {sorted(allowed(layer))}")
    return problems


def self_test():
    with tempfile.TemporaryDirectory() as root:
        def write(rel, text):
            os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
            open(os.path.join(root, rel), "w").write(text)
        write("core/tensor.h", '#include "core/dtype.h"\n')
        write("moe/model.h", '#include "parallel/communicator.h"\n#include "moe/train/trainer.h"\n')
        write("moe/train/trainer.h", '#include "moe/model.h"\n#include "data/loader.h"\n')
        write("data/CMakeLists.txt", "target_link_libraries(cmoe_data PUBLIC cmoe_core cmoe_autograd)\n")
        problems = check(root)
        want = ["moe/model.h:2: layer moe includes moe/train/trainer.h", "data/CMakeLists.txt:1: layer data links cmoe_autograd"]
        for w in want:
            if not any(p.startswith(w) for p in problems):
                print(f"self-test FAILED: expected a problem starting with '{w}', got {problems}")
                return 1
        if len(problems) != len(want):
            print(f"self-test FAILED: unexpected problems {problems}")
            return 1
    print("self-test ok: a crossing include and a crossing link are reported")
    return 0


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--self-test":
        return self_test()
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    problems = check(os.path.abspath(root))
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} dependencies cross the layer direction (see docs/architecture.md)")
        return 1
    print("ok: every include and link follows core <- autograd <- parallel <- moe <- moe/train <- launch "
          "(data, checkpoint on core)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
