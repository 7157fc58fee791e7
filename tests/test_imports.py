"""The package's import graph: no cycles, and the pure core never reaches for the parts
that run a job. Imports inside functions count too (a lazy import still is an edge)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "jax_rnnlm"
# The pure core (arrays in, arrays out) and the declarations of its settings.
CORE = {"cells", "precision", "config", "layers", "adaptive", "model", "optim", "step", "dni",
        "adapt", "tokenizer", "idcache", "data", "generate", "settings", "vocab", "corpora",
        "time_loop", "fused_cells", "linear_cells"}


def module_name(path):
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules():
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(path, known):
    """The package modules a file imports (its own package's __init__ excluded)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from pkg import mod" imports the module mod; "from mod import f", mod itself
            names = [f"{node.module}.{a.name}" for a in node.names
                     if f"{node.module}.{a.name}" in known] or [node.module]
        else:
            continue
        found |= {n for n in names if n in known and n != "jax_rnnlm"}
    return found


def import_graph():
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def find_cycle(graph):
    """A list of modules that import each other in a ring, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_package_has_no_import_cycle():
    assert find_cycle(import_graph()) is None, " -> ".join(find_cycle(import_graph()))


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = import_graph()
    graph["jax_rnnlm.step"] = graph["jax_rnnlm.step"] | {"jax_rnnlm.train"}  # train -> step
    assert find_cycle(graph) is not None


def test_the_pure_core_imports_only_the_core():
    graph = import_graph()
    core = {f"jax_rnnlm.{m}" for m in CORE}
    assert core <= set(graph)
    for name in sorted(core):
        assert graph[name] <= core, f"{name} imports {sorted(graph[name] - core)}"


def test_parallel_builds_on_the_step_not_on_the_loop():
    graph = import_graph()
    assert "jax_rnnlm.step" in graph["jax_rnnlm.parallel"]
    assert "jax_rnnlm.train" not in graph["jax_rnnlm.parallel"]
