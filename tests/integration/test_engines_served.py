"""The engine setting, served: the measured default engine, the int8 opt-in, and the fallback to PyTorch."""

import json
import shutil

import httpx
import pytest

NARRATIVES = ["A 12-year-old student reports being bullied at school and does not want to go back.",
              "Neighbour reports that a girl aged 9 is locked in the house every day. " * 40]
TASKS = ("main_category", "sub_category", "intervention", "priority")


@pytest.fixture()
def checkpoint(tiny_checkpoint, tmp_path):
    path = tmp_path / "tiny"
    shutil.copytree(tiny_checkpoint, path, ignore=shutil.ignore_patterns("onnx-cache"))
    return path


def answers(url):
    with httpx.Client(base_url=url, timeout=60) as client:
        info = client.get("/info").json()
        bodies = [client.post("/classify", json={"narrative": n}) for n in NARRATIVES]
        batch = client.post("/classify/batch", json={"narratives": NARRATIVES})
    assert all(b.status_code == 200 for b in bodies) and batch.status_code == 200
    return info, [b.json() for b in bodies], batch.json()["results"]


def test_int8_serves_and_says_so(serve_session, checkpoint, tmp_path):
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps({"narrative": n}) + "\n" for n in NARRATIVES))
    # The tiny checkpoint is random: its agreement is whatever it is, so the bar is 0 and only the figure is checked.
    url = serve_session.deploy(model=str(checkpoint), dtype="int8", min_agreement=0, agreement_cases=str(cases))
    info, singles, batch = answers(url)
    assert info["dtype"] == "int8" and info["engine"] == info["engine_auto"]["choice"]
    assert set(info["engine_auto"]["rates_windows_per_s"]) == {"torch", "onnxruntime"}
    assert info["agreement"]["cases"] == 2 and info["agreement"]["source"] == str(cases)
    assert 0 <= info["agreement"]["agreement"] <= 1
    _, again, _ = answers(url)
    # A case sent alone gets the same answer each time. (In a batch it may not: dynamic int8 scales
    # activations per batch, so its company moves it; README and RESULTS say so.)
    assert [a["classification"] for a in again] == [s["classification"] for s in singles]
    for case in singles + batch:
        for task in TASKS:
            assert 0 < case["classification"][task]["confidence"] <= 1


@pytest.mark.app("tiny-torch", "tiny")
def test_the_default_engine_answers_what_eager_pytorch_answers(serve_session, tiny_checkpoint):
    # Eager first, then the session's default app (so the tests of that app carry on with it).
    info, eager, _ = answers(serve_session.deploy(model=str(tiny_checkpoint), engine="torch"))
    assert (info["engine"], info["dtype"]) == ("torch", "fp32")
    info, exported, _ = answers(serve_session.deploy(model=str(tiny_checkpoint)))
    assert info["dtype"] == "fp32" and info["engine"] == info["engine_auto"]["choice"]
    for a, b in zip(exported, eager):
        for task in TASKS:
            assert a["classification"][task]["label"] == b["classification"][task]["label"]
            assert a["classification"][task]["confidence"] == pytest.approx(
                b["classification"][task]["confidence"], abs=1e-5)
        assert a["routing"] == b["routing"]


def test_a_broken_export_serves_on_pytorch(serve_session, checkpoint):
    (checkpoint / "onnx").mkdir()
    (checkpoint / "onnx" / "model.onnx").write_bytes(b"truncated download")
    url = serve_session.deploy(model=str(checkpoint), engine="onnxruntime", dtype="int8")
    assert httpx.get(f"{url}/health", timeout=30).json()["status"] == "healthy"
    info, singles, _ = answers(url)
    assert (info["engine"], info["dtype"]) == ("torch", "fp32")
