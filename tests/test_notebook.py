"""The example notebook runs top to bottom and reproduces the original analysis."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "original_notebook.ipynb"


def test_example_notebook_reproduces_the_original(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    # Run where a user opens it, beside the sample it reads; only its state goes elsewhere.
    monkeypatch.setenv("IOTMON_NOTEBOOK_DIR", str(tmp_path))
    NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    outputs = ["".join(o.get("text", "") for o in c.get("outputs", [])) for c in notebook.cells]
    text = "\n".join(outputs)
    assert "10000 readings, 50 sensors, 0 rejected" in text
    assert "Subject: Atenção!" in text and "sensores com possíveis problemas" in text
    assert "Os seguintes sensores apresentam temperatura acima de 75ºC." in text
    assert "Em alerta (" in text and "Atenciosamente," in text
    assert "'sensor19': 81.8" in text
