"""The notebooks import the package's parts rather than defining their own."""

import ast
import json
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def _code(notebook: Path) -> ast.Module:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return ast.parse("\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code"))


def test_the_five_notebooks_exist():
    assert [path.name for path in NOTEBOOKS] == [
        "01_quickstart.ipynb",
        "02_tpu_colab.ipynb",
        "03_serving.ipynb",
        "04_language_model.ipynb",
        "05_pretrain_fine_tune.ipynb",
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


def test_tpu_notebook_runs_the_clis_train_with_a_gs_run_dir():
    """Notebook 02 runs `train()` (what `tf-transformer train` runs: strategy, backups,
    export) rather than hand-built callbacks, with the bucket as run directory."""
    tree = _code(NOTEBOOKS[1])
    imports = [
        (node.module, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    ]
    assert ("tf_transformer.tasks.translation", "train") in imports
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    assert [call for call in calls if getattr(call.func, "id", None) == "train"]
    assert not [call for call in calls if getattr(call.func, "attr", None) == "BackupAndRestore"]
    strings = [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    assert any(value.startswith("gs://") for value in strings)
