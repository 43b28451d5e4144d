"""The example notebook runs top to bottom and reproduces the original analysis."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from tests.helpers import SEED_FILE

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "original_notebook.ipynb"


def test_example_notebook_reproduces_the_original(tmp_path: Path, monkeypatch: object) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    os.environ["IOTMON_SEED_FILE"] = str(SEED_FILE)
    os.environ["IOTMON_NOTEBOOK_DIR"] = str(tmp_path)
    try:
        NotebookClient(
            notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
        ).execute()
    finally:
        del os.environ["IOTMON_SEED_FILE"], os.environ["IOTMON_NOTEBOOK_DIR"]
    outputs = ["".join(o.get("text", "") for o in c.get("outputs", [])) for c in notebook.cells]
    text = "\n".join(outputs)
    assert "10000 readings, 50 sensors, 0 rejected" in text
    assert "Subject: Atenção!" in text and "sensores com possíveis problemas" in text
    assert "Temperatura Média" in text
    assert "'sensor19': 81.8" in text
