"""Fixtures the unit tests of the exported engines share."""

import shutil

import pytest

from deployments.core import export
from deployments.core.inference import ModelRunner


@pytest.fixture(scope="session")
def exported_tiny(tiny_checkpoint, tmp_path_factory):
    """The tiny checkpoint with its ONNX graphs, fp32 and int8, exported once for the session: most tests
    of the engines and of engine 'auto' run the export, few test making it. Nothing is measured here, so
    it keeps no engine choice. Read-only: a test that writes beside it takes a copy."""
    path = tmp_path_factory.mktemp("exported") / "tiny"
    shutil.copytree(tiny_checkpoint, path, ignore=shutil.ignore_patterns("onnx-cache"))
    for dtype in ("fp32", "int8"):
        export.onnx_graphs(path, dtype,
                           lambda: ModelRunner.load(str(path), accelerator="cpu", engine="torch").engine.model)
    return path

