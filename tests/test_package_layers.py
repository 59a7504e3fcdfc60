"""Data flows one way: no module imports from a higher layer of the package
(../shared/DESIGN.md, "Layers of the package")."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "tf_transformer"

# Lower numbers sit lower; a module may import its own layer or any lower one.
LAYERS = {
    "constants": 0,
    "config": 0,
    "progress": 0,
    "data": 1,
    "layers": 2,
    "models": 3,
    "training": 4,
    "decoding": 5,
    "evaluation": 6,
    "serving": 7,
    "tasks": 8,
    "cli": 9,
    "__init__": 9,
}


def layer_of(module: str) -> str:
    """The layer of a dotted module name inside the package (`tf_transformer.x.y` -> x)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imported_modules(source: str, module: str):
    """(line, dotted name) of every tf_transformer module `source` imports, at any
    depth (inside functions too), relative imports resolved against `module`."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")[: -node.level]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            yield node.lineno, name
            for alias in node.names:  # `from tf_transformer import tasks`
                yield node.lineno, f"{name}.{alias.name}"


def upward_imports(source: str, module: str) -> list[str]:
    """`module:line imports target` for each import of a higher layer than `module`'s."""
    own = LAYERS[layer_of(module)]
    found = {}  # line -> the first upward module its import names
    for line, name in imported_modules(source, module):
        if not name.startswith("tf_transformer.") or layer_of(name) not in LAYERS:
            continue
        if LAYERS[layer_of(name)] > own:
            found.setdefault(line, f"{module}:{line} imports {name}")
    return [found[line] for line in sorted(found)]


def package_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        yield ".".join(relative.parts).removesuffix(".__init__"), path


def test_every_package_module_has_a_layer():
    assert {layer_of(module) for module, _ in package_modules()} <= set(LAYERS)


def test_no_module_imports_a_higher_layer():
    violations = [
        violation
        for module, path in package_modules()
        for violation in upward_imports(path.read_text(), module)
    ]
    assert violations == []


@pytest.mark.parametrize(
    "source",
    [
        "from tf_transformer.decoding.translator import Translator",
        "def f():\n    import tf_transformer.serving.export",
        "from tf_transformer import tasks",
        "from ..serving import export",
    ],
)
def test_an_upward_import_is_caught(source):
    (violation,) = upward_imports(source, "tf_transformer.training.fit")
    assert violation.startswith("tf_transformer.training.fit:")


def test_imports_of_the_same_or_a_lower_layer_pass():
    source = (
        "from tf_transformer.models import base\nfrom . import losses\nimport tf_transformer.config"
    )
    assert upward_imports(source, "tf_transformer.training.fit") == []
