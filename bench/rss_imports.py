"""What `podbw run`'s imports cost in resident memory, by top-level package.

    .venv/bin/python bench/rss_imports.py [--top N]

Runs a fresh interpreter that imports what `podbw run` imports, in the same order (the CLI
parser, then the agent), and charges the growth of RSS during each
module's load to that module alone (its own imports are charged to them), split into
anonymous memory (Python objects, native heaps) and file-backed pages (shared libraries and
extension modules: they count in RSS too). Needs no lab and no root. Numbers are for this
machine's Python and wheels; the agent at runtime adds its threads, gRPC's channel and the
per-pod data on top (bench/MEMORY.md).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import collections, importlib.abc, json, os, sys

PAGE = os.sysconf("SC_PAGE_SIZE")


def mem():
    with open("/proc/self/statm") as f:
        fields = f.read().split()
    resident, shared = int(fields[1]) * PAGE, int(fields[2]) * PAGE
    return resident - shared, shared  # anonymous, file-backed


anon, files, first_importer, stack = collections.Counter(), collections.Counter(), {}, []


def enter(name):
    stack.append([name, *mem(), 0, 0])


def leave():
    name, anon0, file0, child_anon, child_file = stack.pop()
    anon1, file1 = mem()
    anon[name] += anon1 - anon0 - child_anon
    files[name] += file1 - file0 - child_file
    if stack:
        stack[-1][3] += anon1 - anon0
        stack[-1][4] += file1 - file0


class Charged(importlib.abc.Loader):
    def __init__(self, inner, name):
        self.inner, self.name = inner, name

    def create_module(self, spec):  # extension modules load their shared library here
        enter(self.name)
        try:
            return self.inner.create_module(spec)
        finally:
            leave()

    def exec_module(self, module):
        enter(self.name)
        try:
            self.inner.exec_module(module)
        finally:
            leave()


class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is None:
                continue
            top = name.split(".")[0]
            importer = stack[-1][0] if stack else "(podbw run)"
            if importer.split(".")[0] != top:
                first_importer.setdefault(top, importer)
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = Charged(spec.loader, name)
            return spec
        return None


start = mem()
sys.meta_path.insert(0, Finder())
from agent.cli.main import build_parser

build_parser()
import agent.service.agent  # noqa: E402,F401
import gzip  # noqa: E402,F401  (imported by the first gzip scrape)

end = mem()
packages = collections.defaultdict(lambda: [0, 0, 0])
for name in set(anon) | set(files):
    entry = packages[name.split(".")[0]]
    entry[0] += anon[name]
    entry[1] += files[name]
for name in sys.modules:
    packages[name.split(".")[0]][2] += 1
print(json.dumps({
    "start": start, "end": end, "modules": len(sys.modules),
    "packages": {k: [*v, first_importer.get(k, "")] for k, v in packages.items()},
}))
"""


def measure() -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--top", type=int, default=25, help="packages to list")
    args = parser.parse_args()
    r = measure()
    mib = 2**20
    (anon0, file0), (anon1, file1) = r["start"], r["end"]
    print(
        f"interpreter: {(anon0 + file0) / mib:.1f} MiB; after podbw run's imports: "
        f"{(anon1 + file1) / mib:.1f} MiB (anon {anon1 / mib:.1f}, file-backed {file1 / mib:.1f}), "
        f"{r['modules']} modules"
    )
    print(f"{'MiB':>6} {'anon':>6} {'file':>6} {'mods':>5}  package (first imported by)")
    rows = sorted(r["packages"].items(), key=lambda kv: -(kv[1][0] + kv[1][1]))
    for name, (anon, files, modules, importer) in rows[: args.top]:
        print(f"{(anon + files) / mib:6.2f} {anon / mib:6.2f} {files / mib:6.2f} {modules:5d}  {name} ({importer})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
