"""detseg's modules import each other in layers, without cycles.

Every ``import`` in ``detseg/`` counts, at module level and inside functions alike: a cycle hidden in
a function is still a cycle. Importing ``detseg.a.b`` also runs ``detseg/a/__init__.py``, so that
package counts as imported too, and a cycle through an ``__init__.py`` is caught.

The layers, lowest first. A module may import its own layer and the ones below, never above; and the
units (the longest name of the table holding a module) import each other without cycles, inside a layer
too (a cycle of imports between two units is one between two of their modules, or one waiting to be
written). A unit is a package with everything in it unless a module of it has a row of its own:

=====  ====================================================  ==============================================
layer  units                                                 what they are
=====  ====================================================  ==============================================
0      ``detseg.jsonio``, ``detseg.lazy``                    leaf helpers: import nothing of detseg
1      ``detseg.data``, ``detseg.nn``, ``detseg.losses``     formats and samples, building blocks, losses
2      ``detseg.metrics``, ``detseg.classic``                scores; classical methods (scored by metrics)
3      ``detseg.viz``                                        pictures and HTML reports of data and scores
4      ``detseg.metrics.evaluate``                           scoring files and writing the report (viz)
5      ``detseg.models``                                     architectures, weights, the registry and zoo
6      ``detseg.transfer``                                   model surgery: freeze, heads, LwF, pseudo
                                                             labels (the engine trains with them)
7      ``detseg.engine``                                     training, evaluation, prediction, loading
8      ``detseg.transfer.study``, ``.study_config``,         what runs the engine: the transfer study and
       ``.report``, ``detseg.zoo``, ``detseg.export``        its report, the zoo's builds, export
9      ``detseg.cli``                                        the command line
10     ``detseg`` (its ``__init__``), ``detseg.api``,        the facade
       ``detseg.__main__``
=====  ====================================================  ==============================================

Inside :mod:`detseg.models` the registry (:mod:`detseg.models.registry`) and the weights' file helpers
(:mod:`detseg.models.weights_file`) are leaves; the architectures register themselves into the registry
and :mod:`detseg.models.zoo` (``create_model``) sits above them all, so no cycle forms there either.
"""

from __future__ import annotations

import ast
from itertools import pairwise
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "detseg"

LAYERS: dict[str, int] = {
    "detseg.jsonio": 0,
    "detseg.lazy": 0,
    "detseg.data": 1,
    "detseg.nn": 1,
    "detseg.losses": 1,
    "detseg.metrics": 2,
    "detseg.classic": 2,
    "detseg.viz": 3,
    "detseg.metrics.evaluate": 4,
    "detseg.models": 5,
    "detseg.transfer": 6,
    "detseg.engine": 7,
    "detseg.transfer.study": 8,
    "detseg.transfer.study_config": 8,
    "detseg.transfer.report": 8,
    "detseg.zoo": 8,
    "detseg.export": 8,
    "detseg.cli": 9,
    "detseg": 10,
    "detseg.api": 10,
    "detseg.__main__": 10,
}


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package: ``{"detseg.models.zoo": path}``, packages by their ``__init__``."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> list[tuple[str, int]]:
    """``(dotted name, line)`` for every import in the tree, relative ones resolved; for
    ``from a import b`` both ``a`` and ``a.b`` (``b`` may be a submodule)."""
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            names.append((base, node.lineno))
            names += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return names


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def import_graph(package: Path = PACKAGE) -> dict[str, dict[str, int]]:
    """``{importer: {imported: line}}`` between detseg's modules. Importing ``a.b.c`` also runs the
    ``__init__`` of ``a.b`` (unless the importer lives inside ``a.b``, where it already ran)."""
    files = module_files(package)
    graph: dict[str, dict[str, int]] = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        is_package = path.name == "__init__.py"
        own = set(_ancestors(module)) | ({module} if is_package else set())
        edges = graph.setdefault(module, {})
        for name, line in _imported_names(tree, module, is_package):
            if name not in files:
                continue
            for target in [*_ancestors(name), name]:
                if target in files and target != module and target not in own:
                    edges.setdefault(target, line)
    return graph


def layer_of(module: str) -> tuple[str, int]:
    """``(unit, layer)``: the unit is the longest entry of ``LAYERS`` that is ``module`` or a package
    holding it (``detseg`` itself holds only its ``__init__``: a new top-level module needs a row)."""
    for prefix in [module, *reversed(_ancestors(module)[1:])]:
        if prefix in LAYERS:
            return prefix, LAYERS[prefix]
    raise KeyError(f"{module} is in no layer: add it to LAYERS in {__file__}")


def unit_graph(graph: dict[str, dict[str, int]]) -> dict[str, dict[str, tuple[str, str, int]]]:
    """``{unit: {imported unit: (importer, imported, line) of one import between them}}``."""
    units: dict[str, dict[str, tuple[str, str, int]]] = {}
    for importer, edges in sorted(graph.items()):
        here = layer_of(importer)[0]
        for imported, line in sorted(edges.items()):
            there = layer_of(imported)[0]
            if there != here:
                units.setdefault(here, {}).setdefault(there, (importer, imported, line))
    return units


def find_cycle(graph: dict[str, dict[str, int]]) -> list[str] | None:
    """One cycle of the graph as ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, {})):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def _describe(cycle: list[str], graph: dict[str, dict[str, int]]) -> str:
    return "\n".join(f"  {a} imports {b} (line {graph[a][b]})" for a, b in pairwise(cycle))


def test_every_module_has_a_layer():
    for module in module_files():
        layer_of(module)


def test_no_lower_layer_imports_a_higher_one():
    graph = import_graph()
    wrong = []
    for importer, edges in sorted(graph.items()):
        low_name, low = layer_of(importer)
        for imported, line in sorted(edges.items()):
            high_name, high = layer_of(imported)
            if high > low:
                wrong.append(
                    f"  {importer} (layer {low}, {low_name}) imports {imported} "
                    f"(layer {high}, {high_name}) on line {line}"
                )
    assert not wrong, "imports from a higher layer:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = import_graph()
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle:\n" + _describe(cycle, graph)


def test_no_cycles_between_units():
    units = unit_graph(import_graph())
    cycle = find_cycle(units)
    assert cycle is None, "cycle between units of LAYERS:\n" + "\n".join(
        "  {} imports {} (line {})".format(*units[a][b]) for a, b in pairwise(cycle)
    )


def test_the_walker_sees_function_level_imports_and_package_inits(tmp_path):
    """The checks above find what they are meant to find: a cycle hidden inside a function, and one
    that closes through a package's ``__init__.py``."""
    root = tmp_path / "detseg"
    (root / "low").mkdir(parents=True)
    (root / "high").mkdir()
    (root / "__init__.py").write_text("")
    (root / "low" / "__init__.py").write_text("")
    (root / "low" / "a.py").write_text("def f():\n    from ..high import b\n")
    (root / "high" / "__init__.py").write_text("from detseg.high.b import g\n")
    (root / "high" / "b.py").write_text("from detseg.low.a import f\ndef g():\n    pass\n")
    (root / "high" / "c.py").write_text("import detseg.low.a\n")
    graph = import_graph(root)
    assert graph["detseg.low.a"] == {"detseg.high": 2, "detseg.high.b": 2}
    assert graph["detseg.high.c"] == {"detseg.low": 1, "detseg.low.a": 1}
    assert find_cycle(graph) == ["detseg.high", "detseg.high.b", "detseg.low.a", "detseg.high"]
    del graph["detseg.high"]  # without the __init__'s import the cycle still closes directly
    assert find_cycle(graph) == ["detseg.high.b", "detseg.low.a", "detseg.high.b"]
    graph["detseg.low.a"] = {}
    assert find_cycle(graph) is None
