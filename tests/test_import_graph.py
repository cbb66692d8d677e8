"""Dependencies point one way: an `ast` import graph of instance_benchmarks/, stacks/ and training_scripts/.

Every `import` is read from the source (nothing is imported). Imports under `if TYPE_CHECKING:` are left out;
imports inside a function body are counted apart, since they are how a circle hides. The rules (see the README's
layout section and /work/shared/DESIGN.md):

- the layers: core < catalog < measure < campaigns < backends (jobs) < campaign_file < doctor < environment < runner
  < embedded < commands < cli: a package imports only from layers below its own, so no two packages import each other
  and there is no circle between modules;
- the agent (what runs on an instance) imports only core and measure, and nothing imports the agent;
- measure is a leaf: the standard library, google-re2 and training_scripts only;
- stacks/ imports only core and catalog; training_scripts/ imports neither instance_benchmarks nor stacks;
- the backend registry is consulted by the runner (and the environment that binds backends for it), the CLI, and
  the campaign file's parse (campaign_file: campaigns/spec.py's parse plus the backend's checks; campaigns/ imports
  no backend);
  a backend's folder imports no other backend's folder, and of campaigns/ only its neutral parts;
- no import inside a function, except an optional or heavy third-party package (LAZY_ALLOWED), with a comment
  on the import's line saying why.

Every failure prints the offending edges with file and line.
"""
from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("instance_benchmarks", "stacks", "training_scripts")

# Layers of instance_benchmarks: a package imports only from lower layers. The agent, stacks and training_scripts
# have their own rules below.
LAYERS = (
    ("core",),
    ("catalog",),
    ("measure",),
    ("campaigns",),
    ("backends", "jobs"),   # jobs: the one-shot CDK jobs, a sibling of the campaign backends
    ("campaign_file",),     # a campaign file read for a command: the spec's parse and the registry's backend checks
    ("doctor",),
    ("environment",),
    ("runner",),
    ("embedded",),
    ("commands",),          # one module per command group over one environment factory
    ("cli",),               # the entry point: registers the command groups
)
LEVEL = {unit: level for level, units in enumerate(LAYERS) for unit in units}
AGENT_MAY_IMPORT = {"core", "measure", "agent"}
STACKS_MAY_IMPORT = {"core", "catalog"}
REGISTRY = "instance_benchmarks.backends.registry"
REGISTRY_USERS = {"campaign_file", "runner", "environment", "commands", "cli"}
# campaigns/ modules a backend may use: the S3 layout of a campaign, nothing that plans, validates or reports
CAMPAIGNS_NEUTRAL = {"instance_benchmarks.campaigns.store"}

# Third-party packages that may be imported inside a function: optional extras or heavy imports that most
# commands never need. Each such import carries a comment on its line.
LAZY_ALLOWED = {
    "sagemaker",    # the [sagemaker] extra (about 1 GB)
    "matplotlib",   # charts only
    "numpy",        # with matplotlib
    "pyarrow",      # Parquet export only
    "aws_cdk",      # CDK synth in the embedded deploy (seconds to import)
    "moto",         # the embedded default's server only
    "torch",        # workloads only
    "sklearn",      # one workload's data set only
    "boto3",        # the agent's S3 commands; its container entry imports the module without it
}
# Our own modules that may be imported inside a function, for the same reason (and with a comment, too).
LAZY_ALLOWED_OURS = {
    "stacks.app_stacks",  # imports aws_cdk: only the embedded deploy's synthesis needs it
    "training_scripts.inference",  # imports torch (about 3 s): only `models download --check` needs it
}


@dataclass(frozen=True)
class Edge:
    importer: str       # module name
    imported: str       # the module (of the three packages) it names, or the top-level name of a third party
    line: int
    in_function: bool
    internal: bool
    path: Path

    def __str__(self) -> str:
        where = "inside a function" if self.in_function else "module level"
        return f"{self.importer} -> {self.imported} ({self.path.relative_to(ROOT)}:{self.line}, {where})"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


MODULES = all_modules()


def resolve(name: str) -> str | None:
    """The longest module of ours that `name` (a module, or a module's attribute) names, else None."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in MODULES:
            return ".".join(parts[:end])
    return None


def is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports(module: str, path: Path) -> list[Edge]:
    edges: list[Edge] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def add(node, names: list[str], in_function: bool) -> None:
        for name in names:
            ours = resolve(name)
            edges.append(Edge(module, ours or name.split(".")[0], node.lineno, in_function, ours is not None, path))

    def visit(node, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and is_type_checking(child):
                for other in child.orelse:
                    visit_node(other, in_function)
                continue
            visit_node(child, in_function)

    def visit_node(node, in_function: bool) -> None:
        if isinstance(node, ast.Import):
            add(node, [alias.name for alias in node.names], in_function)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package up `level - 1` parents
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            add(node, [f"{base}.{alias.name}" if base else alias.name for alias in node.names], in_function)
        visit(node, in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(), str(path)), False)
    return list(dict.fromkeys(edge for edge in edges if edge.imported != module))  # one per module and line


EDGES = [edge for module, path in MODULES.items() for edge in imports(module, path)]
INTERNAL = [edge for edge in EDGES if edge.internal]


def unit(module: str) -> str:
    """instance_benchmarks.<unit>[...]; stacks and training_scripts are one unit each."""
    parts = module.split(".")
    return parts[1] if parts[0] == "instance_benchmarks" and len(parts) > 1 else parts[0]


def failures(edges) -> str:
    return "\n  " + "\n  ".join(sorted({str(edge) for edge in edges}))


def cross_unit(edges=INTERNAL):
    return [edge for edge in edges if unit(edge.importer) != unit(edge.imported)]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative): the components of more than one module."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


# ----------------------------------------------------------------------------------------------------- the rules
def test_the_graph_is_read_from_every_module():
    assert len(MODULES) > 80 and "instance_benchmarks.runner" in MODULES and "stacks.config" in MODULES
    assert {LEVEL[unit(m)] for m in MODULES if unit(m) in LEVEL} == set(range(len(LAYERS))), "an empty layer"
    units = {unit(m) for m in MODULES if m.startswith("instance_benchmarks.")}
    assert units - set(LEVEL) - {"agent", "instance_benchmarks"} == set(), "a package with no layer"


def test_no_two_packages_import_each_other():
    pairs: dict[tuple[str, str], list[Edge]] = {}
    for edge in cross_unit():
        pairs.setdefault((unit(edge.importer), unit(edge.imported)), []).append(edge)
    both = [edge for (a, b), edges in pairs.items() if (b, a) in pairs for edge in edges]
    assert not both, "packages that import each other:" + failures(both)


def test_packages_import_only_lower_layers():
    upward = [edge for edge in cross_unit() if unit(edge.importer) in LEVEL and unit(edge.imported) in LEVEL
              and LEVEL[unit(edge.importer)] <= LEVEL[unit(edge.imported)]]
    assert not upward, "imports of a package in the same or a higher layer:" + failures(upward)


def test_the_agent_imports_only_core_and_measure_and_nothing_imports_it():
    out = [edge for edge in cross_unit() if unit(edge.importer) == "agent"
           and unit(edge.imported) not in AGENT_MAY_IMPORT | {"training_scripts"}]
    into = [edge for edge in cross_unit() if unit(edge.imported) == "agent"]
    assert not out + into, "the agent's imports, or imports of the agent:" + failures(out + into)


def test_measure_is_a_leaf():
    wrong = [edge for edge in cross_unit() if unit(edge.importer) == "measure" and unit(edge.imported) != "training_scripts"]
    assert not wrong, "measure imports other packages:" + failures(wrong)


def test_stacks_import_only_core_and_catalog_and_training_scripts_nothing():
    wrong = [edge for edge in cross_unit() if unit(edge.importer) == "stacks"
             and edge.imported.startswith("instance_benchmarks") and unit(edge.imported) not in STACKS_MAY_IMPORT]
    wrong += [edge for edge in cross_unit() if unit(edge.importer) == "training_scripts"]
    wrong += [edge for edge in cross_unit() if unit(edge.imported) == "stacks"
              and unit(edge.importer) not in {"embedded", "cli"}]
    assert not wrong, "stacks/training_scripts imports out of bounds:" + failures(wrong)


def test_the_registry_is_consulted_only_by_the_runner_and_the_cli():
    wrong = [edge for edge in INTERNAL if edge.imported == REGISTRY and unit(edge.importer) not in REGISTRY_USERS]
    assert not wrong, "registry users besides the runner and the CLI:" + failures(wrong)


def test_campaigns_import_no_backend():
    wrong = [edge for edge in INTERNAL if unit(edge.importer) == "campaigns" and unit(edge.imported) == "backends"]
    assert not wrong, "campaigns/ importing a backend (the backend's checks belong in campaign_file):" + failures(wrong)


def test_a_backend_imports_no_other_backend_and_only_neutral_campaign_code():
    def folder(module: str) -> str | None:
        parts = module.split(".")
        return parts[2] if len(parts) > 3 and parts[1] == "backends" else None

    wrong = [edge for edge in INTERNAL if folder(edge.importer) and (
        (folder(edge.imported) and folder(edge.imported) != folder(edge.importer))
        or (unit(edge.imported) == "campaigns" and edge.imported not in CAMPAIGNS_NEUTRAL)
        or unit(edge.imported) == "agent")]
    assert not wrong, "a backend reaching into another backend, the agent or campaigns' non-neutral code:" + failures(wrong)


def test_no_circles_between_modules():
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for edge in INTERNAL:
        graph[edge.importer].add(edge.imported)
    circles = strongly_connected(graph)
    assert not circles, "modules importing each other, directly or round a circle:\n  " + "\n  ".join(
        " <-> ".join(circle) for circle in circles)


def test_no_imports_inside_functions_but_optional_heavy_packages_with_a_comment():
    checked = [edge for edge in EDGES if edge.in_function and not edge.importer.startswith("training_scripts")]
    internal = [edge for edge in checked if edge.internal and edge.imported not in LAZY_ALLOWED_OURS]
    third = [edge for edge in checked if not edge.internal or edge.imported in LAZY_ALLOWED_OURS]
    not_allowed = [edge for edge in third if edge.imported not in LAZY_ALLOWED | LAZY_ALLOWED_OURS]
    lines = {path: path.read_text().splitlines() for path in {edge.path for edge in third}}
    silent = [edge for edge in third if "#" not in lines[edge.path][edge.line - 1]]
    assert not internal, "our own modules imported inside a function (move the import up or the code down):" + failures(internal)
    assert not not_allowed, "third-party or standard modules imported inside a function:" + failures(not_allowed)
    assert not silent, "an optional import inside a function with no comment saying why:" + failures(silent)


def test_the_rules_catch_a_circle_and_an_upward_import(tmp_path):
    """The checks themselves: a made-up graph with a circle and an upward import is caught."""
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nimport os\nif TYPE_CHECKING:\n    import json\n"
                      "def f():\n    import re  # why\n")
    found = [(edge.imported, edge.in_function, edge.internal) for edge in imports("m", source)]
    assert found == [("typing", False, False), ("os", False, False), ("re", True, False)]
    upward = Edge("instance_benchmarks.core.x", "instance_benchmarks.runner", 1, False, True, source)
    assert cross_unit([upward]) == [upward] and LEVEL["core"] < LEVEL["runner"]


if __name__ == "__main__":  # the numbers: python tests/test_import_graph.py
    every = [edge for edge in INTERNAL if unit(edge.importer) != unit(edge.imported)]
    up = [e for e in every if unit(e.importer) in LEVEL and unit(e.imported) in LEVEL
          and LEVEL[unit(e.importer)] <= LEVEL[unit(e.imported)]]
    up += [e for e in every if unit(e.importer) == "agent" and unit(e.imported) not in AGENT_MAY_IMPORT | {"training_scripts"}]
    up += [e for e in every if unit(e.imported) == "agent"]
    pairs = {(unit(e.importer), unit(e.imported)) for e in every}
    mutual = sorted({tuple(sorted(pair)) for pair in pairs if pair[::-1] in pairs})
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for edge in INTERNAL:
        graph[edge.importer].add(edge.imported)
    circles = strongly_connected(graph)
    lazy = [edge for edge in EDGES if edge.in_function and not edge.importer.startswith("training_scripts")]
    print(f"modules {len(MODULES)}, layers {len(LAYERS)}; imports of our modules: "
          f"{sum(not e.in_function for e in INTERNAL)} at module level, {sum(e.in_function for e in INTERNAL)} inside functions")
    print(f"imports inside functions (instance_benchmarks, stacks): {sum(e.internal for e in lazy)} of ours, "
          f"{sum(not e.internal for e in lazy)} third-party or standard")
    print(f"upward or forbidden package imports {len(up)}")
    print(f"package pairs importing each other {len(mutual)}: {mutual}")
    print(f"circles {len(circles)}: " + "; ".join(" <-> ".join(c) for c in circles))
    sys.exit(0)
