"""The notebooks import the package's parts rather than defining their own."""

import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def _code(notebook: Path) -> ast.Module:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return ast.parse("\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"))


def test_the_three_notebooks_exist():
    assert [path.name for path in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_tpu_colab.ipynb",
        "03_serving.ipynb",
    ]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_notebooks_define_no_class_and_import_the_package(notebook):
    tree = _code(notebook)
    assert not [node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)]
    imported = {
        node.module
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module.startswith("tf_transformer")
    }
    assert imported, f"{notebook.name} imports nothing from tf_transformer"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_outputs_are_stripped(notebook):
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    code_cells = [cell for cell in cells if cell["cell_type"] == "code"]
    assert all(not cell["outputs"] and cell["execution_count"] is None for cell in code_cells)


def test_tpu_notebook_picks_its_strategy_with_the_clis_function():
    from tf_transformer.training import fit, strategy

    tree = _code(NOTEBOOKS[1])
    imports = [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]
    assert ("tf_transformer.training.strategy", "select_strategy") in imports
    calls = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "select_strategy"
    ]
    assert calls
    assert fit.select_strategy is strategy.select_strategy  # what `tf-transformer train` calls
