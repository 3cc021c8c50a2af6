"""The import picture of the llmlab package: which layer imports which, cycles, and upward arrows.

    python scripts/import_picture.py            # the layer picture, module counts and any violation
    python scripts/import_picture.py --edges    # every module-to-module import

Layers, bottom to top (a module may import its own layer and the ones below, never above):
  base      errors, paths, progress, batching, corpus, distributed, threads, context, capabilities
  machinery models, metrics, generation, data, fixtures
  families  methods, tasks, training, execution (tasks never import methods, nor methods tasks)
  records   record, tracking, tables, checks, sweep
  flow      runner
  entry     cli, and the package __init__ (it registers the ${fixture:...} config resolver)
Imports inside functions count too (they are still dependencies).
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "llmlab"
LAYERS = {
    "base": ("errors", "paths", "progress", "batching", "corpus", "distributed", "threads", "context", "capabilities"),
    "machinery": ("models", "metrics", "generation", "data", "fixtures"),
    "families": ("methods", "tasks", "training", "execution"),
    "records": ("record", "tracking", "tables", "checks", "sweep"),
    "flow": ("runner",),
    "entry": ("cli", "__init__"),  # the package __init__ only registers the ${fixture:...} config resolver
}
ORDER = list(LAYERS)
FORBIDDEN = (("tasks", "methods"), ("methods", "tasks"))


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def layer_of(module: str) -> str:
    t = top(module)
    for layer, names in LAYERS.items():
        if t in names:
            return layer
    return "unknown"


def edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    modules = {module_name(p) for p in ROOT.rglob("*.py")}
    for path in ROOT.rglob("*.py"):
        src = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = ([node.module] if node.module != "llmlab" else []) + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.startswith("llmlab") and name in modules and name != src:
                    graph[src].add(name)
        graph.setdefault(src, set())
    return graph


def violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for src, dsts in sorted(graph.items()):
        for dst in sorted(dsts):
            a, b = layer_of(src), layer_of(dst)
            if ORDER.index(b) > ORDER.index(a) if a in ORDER and b in ORDER else False:
                out.append(f"upward: {src} ({a}) imports {dst} ({b})")
            if (top(src), top(dst)) in FORBIDDEN:
                out.append(f"forbidden: {src} imports {dst}")
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def picture(graph: dict[str, set[str]]) -> str:
    arrows: dict[tuple[str, str], int] = defaultdict(int)
    for src, dsts in graph.items():
        for dst in dsts:
            a, b = top(src), top(dst)
            if a != b:
                arrows[(a, b)] += 1
    lines = []
    for layer in reversed(ORDER):
        members = [m for m in LAYERS[layer] if any(top(x) == m for x in graph)]
        lines.append(f"{layer:>9}: {', '.join(members)}")
    lines.append("")
    lines.append("package-level imports (count of module pairs):")
    for (a, b), n in sorted(arrows.items()):
        lines.append(f"  {a} -> {b} ({n})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    graph = edges()
    if "--edges" in argv:
        for src, dsts in sorted(graph.items()):
            for dst in sorted(dsts):
                print(f"{src} -> {dst}")
        return 0
    print(picture(graph))
    bad, loops = violations(graph), cycles(graph)
    print(f"\n{len(graph)} modules; {sum(len(v) for v in graph.values())} imports; "
          f"{len(loops)} cycles; {len(bad)} upward or forbidden imports")
    for line in bad:
        print("  " + line)
    for loop in loops:
        print("  cycle: " + " <-> ".join(loop))
    return 1 if bad or loops else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
