"""Imports point one way: no cycles, no upward imports, one home for user-facing exceptions."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT


def _loaded(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(m for m in sys.modules if m.startswith('embedgrid')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("module, forbidden", [
    ("embedgrid.model.pooling", {"embedgrid.model.encoder", "embedgrid.model.backbone", "embedgrid.grid.cell"}),
    ("embedgrid.model.pooling.sizes", {"embedgrid.model.encoder"}),
    ("embedgrid.model.spec", {"embedgrid.model.backbone", "embedgrid.model.encoder"}),
    ("embedgrid.grid.celldir", {"embedgrid.model.encoder", "embedgrid.grid.cell", "embedgrid.evaluate.run"}),
    ("embedgrid.errors", {"embedgrid.grid.cell", "embedgrid.train.loop"}),
    ("embedgrid.data.wordnet", {"embedgrid.evaluate.tasks", "embedgrid.evaluate.run"}),  # training reads no mteb
])
def test_lower_modules_do_not_import_upper_ones(module, forbidden):
    assert not _loaded(module) & forbidden


def _error_names() -> set[str]:
    tree = ast.parse((ROOT / "embedgrid" / "errors.py").read_text())
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}


def _sources() -> list[Path]:
    return sorted([*(p for d in ("embedgrid", "tests", "benchmarks", "hydra_plugins") for p in (ROOT / d).rglob("*.py")),
                   ROOT / "launch.py"])


def test_user_facing_exceptions_are_defined_in_errors_only():
    assert {"CellBusy", "CellConflict", "Preempted", "NonFiniteLoss", "MissingAsset", "SlurmError"} <= _error_names()
    defined = [p for p in (ROOT / "embedgrid").rglob("*.py") if p.name != "errors.py"
               and any(line.startswith("class ") and ("Error)" in line or "RuntimeError)" in line)
                       for line in p.read_text().splitlines())]
    assert not defined, f"exceptions defined outside embedgrid/errors.py: {defined}"


def test_user_facing_exceptions_are_imported_from_errors_only_and_never_re_exported():
    """`from embedgrid.errors import X` everywhere; a module that imports an error must use it (no re-export)."""
    names = _error_names()
    wrong, re_exported = [], []
    for path in _sources():
        if path == ROOT / "embedgrid" / "errors.py":
            continue
        tree = ast.parse(path.read_text())
        where = path.relative_to(ROOT)
        imported: dict[str, int] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and any(a.name in names for a in node.names):
                if node.module != "embedgrid.errors":
                    wrong.append(f"{where}:{node.lineno}: from {node.module} import ...")
                imported.update({a.asname or a.name: node.lineno for a in node.names if a.name in names})
            elif isinstance(node, ast.Attribute) and node.attr in names and ast.unparse(node.value) not in (
                    "errors", "embedgrid.errors"):
                wrong.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        if where.parts[0] != "embedgrid":
            continue
        used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
        exported = {e.value for n in ast.walk(tree) if isinstance(n, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "__all__" for t in n.targets)
                    for e in getattr(n.value, "elts", []) if isinstance(e, ast.Constant)}
        re_exported += [f"{where}:{line}: {name}" for name, line in imported.items()
                        if name not in used or name in exported]
    assert not wrong, "import exceptions from embedgrid.errors only:\n" + "\n".join(wrong)
    assert not re_exported, "modules that re-export (import without using) an exception:\n" + "\n".join(re_exported)


@pytest.mark.parametrize("package, forbidden", [("pooling", ("embedgrid.model.encoder", "embedgrid.model.backbone")),
                                                ("spec.py", ("embedgrid.model.backbone", "embedgrid.model.encoder"))])
def test_no_lazy_upward_imports_either(package, forbidden):
    """Imports inside functions count too: the pooling package builds its own heads (pooling/build.py)."""
    path = ROOT / "embedgrid" / "model" / package
    for source in ([path] if path.is_file() else sorted(path.rglob("*.py"))):
        for line in source.read_text().splitlines():
            stripped = line.strip()
            if stripped.startswith(("import ", "from ")):
                assert not any(stripped.split()[1].startswith(f) for f in forbidden), (source, line)


# Layers, lowest first: a module may import its own layer or lower ones, never a higher one. Function-level
# imports count. The root package ``embedgrid`` itself (its ``__version__``, the public ``load_encoder``) is the
# namespace every submodule lives in and is not a layer. ``cellfiles`` (the cell-directory names, the atomic write,
# the design table), shared with analysis, is the lowest.
SHARED = "cellfiles"
LAYERS = (
    {SHARED},
    {"errors", "io", "secrets", "versions", "precision", "flops", "console", "logger", "assets", "cost"},
    {"model", "losses", "data"},
    {"train", "evaluate"},
    {"slurm"},
    {"grid"},
    {"export", "wandb_sync", "mine"},  # command-line tools over finished cells and saved encoders
)


def _import_graph() -> dict[str, set[str]]:
    """embedgrid (and cellfiles) module -> the ones of them it imports anywhere in its source (walked with ast)."""
    modules = {}
    for path in [*(ROOT / "embedgrid").rglob("*.py"), *(ROOT / SHARED).rglob("*.py")]:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def resolve(name: str) -> str:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name

    graph = {}
    for module, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(("embedgrid", SHARED)):
                targets |= {resolve(f"{node.module}.{alias.name}") for alias in node.names}
            elif isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.startswith(("embedgrid", SHARED))}
        # a package's own __init__ and its ancestors are the namespace the module lives in, not a dependency
        graph[module] = {t for t in targets if t != module and not module.startswith(t + ".")}
    return graph


def _layer(module: str) -> int | None:
    parts = module.split(".")
    top = SHARED if parts[0] == SHARED else parts[1] if len(parts) > 1 else None
    return next((i for i, names in enumerate(LAYERS) if top in names), None)


def test_every_embedgrid_module_has_a_layer():
    assert not [m for m in _import_graph() if m != "embedgrid" and _layer(m) is None]


def test_no_module_imports_a_higher_layer():
    upward = [(m, t) for m, targets in _import_graph().items() for t in targets
              if m != "embedgrid" and t != "embedgrid" and _layer(t) > _layer(m)]
    assert not upward, f"upward imports (module -> higher-layer module): {upward}"


def test_the_import_graph_has_no_cycle():
    graph = _import_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                cycles.append(path[path.index(target):] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, f"import cycles: {cycles}"


def test_the_cell_directory_is_known_only_to_the_grid_and_export():
    users = {m for m, targets in _import_graph().items() if "embedgrid.grid.celldir" in targets}
    assert users and all(m.startswith(("embedgrid.grid.", "embedgrid.export.")) or m == "embedgrid" for m in users), \
        users


def _imported_tops(path: Path) -> set[str]:
    """The top-level packages a source file imports (a relative import: its own package, ``cellfiles``)."""
    tops = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            ([SHARED] if node.level else [node.module or ""]) if isinstance(node, ast.ImportFrom) else []
        tops |= {n.split(".")[0] for n in names}
    return tops


def test_the_shared_package_is_standard_library_only():
    """cellfiles sits below both embedgrid and analysis: it imports neither, nor anything outside the stdlib."""
    files = sorted((ROOT / SHARED).rglob("*.py"))
    assert files
    for path in files:
        tops = _imported_tops(path)
        assert not tops & {"embedgrid", "analysis"}, path
        assert not tops - set(sys.stdlib_module_names) - {SHARED}, (path, tops)


def test_analysis_reads_files_and_never_imports_embedgrid():
    for path in (ROOT / "analysis").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "embedgrid" for n in names), path
