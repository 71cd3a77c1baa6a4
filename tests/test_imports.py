"""Imports point one way: no cycles, no upward imports, one home for user-facing exceptions."""
from __future__ import annotations

import subprocess
import sys

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


def test_user_facing_exceptions_live_in_errors_and_are_re_exported():
    import embedgrid.assets
    import embedgrid.grid.cell
    import embedgrid.errors as errors
    import embedgrid.slurm
    import embedgrid.grid.sweeper
    import embedgrid.train.distributed
    import embedgrid.train.loop

    assert embedgrid.grid.cell.CellConflict is errors.CellConflict and embedgrid.grid.cell.CellBusy is errors.CellBusy
    assert embedgrid.train.loop.Preempted is errors.Preempted and embedgrid.train.loop.NonFiniteLoss is errors.NonFiniteLoss
    assert embedgrid.train.distributed.RankZeroFailed is errors.RankZeroFailed
    assert embedgrid.assets.MissingAsset is errors.MissingAsset and embedgrid.slurm.SlurmError is errors.SlurmError
    assert embedgrid.grid.sweeper.GridFailed is errors.GridFailed
    defined = [p for p in (ROOT / "embedgrid").rglob("*.py") if p.name != "errors.py"
               and any(line.startswith("class ") and ("Error)" in line or "RuntimeError)" in line)
                       for line in p.read_text().splitlines())]
    assert not defined, f"exceptions defined outside embedgrid/errors.py: {defined}"


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
# namespace every submodule lives in and is not a layer.
LAYERS = (
    {"errors", "io", "secrets", "versions", "precision", "flops", "console", "logger", "assets"},
    {"model", "losses", "data"},
    {"train", "evaluate"},
    {"slurm"},
    {"grid"},
    {"export", "wandb_sync"},  # they read finished cell directories
)


def _import_graph() -> dict[str, set[str]]:
    """embedgrid module -> the embedgrid modules it imports anywhere in its source (walked with ast)."""
    import ast

    modules = {}
    for path in (ROOT / "embedgrid").rglob("*.py"):
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
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("embedgrid"):
                targets |= {resolve(f"{node.module}.{alias.name}") for alias in node.names}
            elif isinstance(node, ast.Import):
                targets |= {resolve(a.name) for a in node.names if a.name.startswith("embedgrid")}
        # a package's own __init__ and its ancestors are the namespace the module lives in, not a dependency
        graph[module] = {t for t in targets if t != module and not module.startswith(t + ".")}
    return graph


def _layer(module: str) -> int | None:
    top = module.split(".")[1] if "." in module else None
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


def test_analysis_reads_files_and_never_imports_embedgrid():
    import ast

    for path in (ROOT / "analysis").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not any(n.split(".")[0] == "embedgrid" for n in names), path
