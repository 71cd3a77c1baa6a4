"""Every annotation in analysis/ names something its module imports (at run time or under TYPE_CHECKING)."""
import ast
import importlib
import inspect
import typing
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "analysis").rglob("*.py")
                 if p.name != "__main__.py")


def _type_checking_names(module) -> dict:
    """The names a module's ``if TYPE_CHECKING:`` blocks import, imported."""
    names: dict = {}
    for node in ast.parse(inspect.getsource(module)).body:
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            exec(compile(ast.Module(body=node.body, type_ignores=[]), module.__file__, "exec"), names)
    return names


@pytest.mark.parametrize("name", MODULES)
def test_annotations_resolve(name):
    module = importlib.import_module(name)
    namespace = {**vars(module), **_type_checking_names(module)}
    for obj in vars(module).values():
        if getattr(obj, "__module__", None) != name:
            continue
        if inspect.isclass(obj):
            members = [obj, *(m for m in vars(obj).values() if inspect.isfunction(m))]
        elif inspect.isfunction(obj):
            members = [obj]
        else:
            continue
        for member in members:
            typing.get_type_hints(member, globalns=namespace)
