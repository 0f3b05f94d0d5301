#!/usr/bin/env python3
"""Fail when our packages import each other against their layers, or in a cycle.

Layers, bottom first: core < models < notifications < tasks < flows < propflow. A package may
import its own modules and those of the layers below it, never above. Every import counts,
including those inside functions (a lazy import is still a dependency); tests/ and bench/ may
import anything and are not scanned. Prints each offending import with its file and line.
Exit 0 when clean, 1 otherwise.
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

LAYERS = ["core", "models", "notifications", "tasks", "flows", "propflow"]
RANK = {name: i for i, name in enumerate(LAYERS)}
ROOT = Path(__file__).resolve().parent.parent


def imported_packages(root: Path, path: Path, package: str) -> list[tuple[int, str, str]]:
    """(line, imported top-level package of ours, the module as written) for each import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside its own package unless it climbs out of it
                depth = len(path.relative_to(root / package).parts)
                names = [package if node.level < depth else ""]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in RANK:
                found.append((node.lineno, top, name))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the project's folder")
    root = parser.parse_args(argv).root.resolve()
    graph: dict[str, set[str]] = {name: set() for name in LAYERS}
    problems = []
    for package in LAYERS:
        for path in sorted((root / package).rglob("*.py")):
            for line, top, name in imported_packages(root, path, package):
                if top == package:
                    continue
                graph[package].add(top)
                if RANK[top] > RANK[package]:
                    where = path.relative_to(root)
                    problems.append(f"{where}:{line}: {package} imports {name} (a layer above)")
    cycles = find_cycles(graph)
    for cycle in cycles:
        problems.append("package cycle: " + " -> ".join(cycle))
    order = " < ".join(LAYERS)
    if problems:
        print("\n".join(problems))
        print(f"layers: {len(problems)} problem(s); the order is {order}")
        return 1
    edges = ", ".join(f"{p} -> {{{', '.join(sorted(graph[p]))}}}" for p in LAYERS if graph[p])
    print(f"layers: ok ({order}); {edges}")
    return 0


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One example path for each cycle found by a depth-first walk."""
    cycles: list[list[str]] = []
    seen: set[str] = set()

    def walk(node: str, path: list[str]) -> None:
        if node in path:
            cycles.append(path[path.index(node) :] + [node])
            return
        if node in seen:
            return
        seen.add(node)
        for nxt in sorted(graph[node]):
            walk(nxt, path + [node])

    for start in LAYERS:
        walk(start, [])
    return cycles


if __name__ == "__main__":
    sys.exit(main())
