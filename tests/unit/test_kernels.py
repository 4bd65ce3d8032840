"""The demo build re-runs itself with host-independent kernels before doing any arithmetic."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT
from training.kernels import PINNED_KERNELS, pinned

PROBE = """
import json, os, sys
from training.kernels import rerun_pinned
print("start", flush=True)
rerun_pinned("probe", sys.argv[1:])
print(json.dumps({"argv": sys.argv[1:], **{k: os.environ.get(k) for k in %r}}))
""" % (sorted(PINNED_KERNELS),)


def run_probe(tmp_path, env):
    (tmp_path / "probe.py").write_text(PROBE, encoding="utf-8")
    env = {**env, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO_ROOT)])}
    out = subprocess.run([sys.executable, "-m", "probe", "--size", "demo"], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout.splitlines()
    return out


def test_an_unpinned_process_is_replaced_by_a_pinned_one_with_the_same_arguments(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in PINNED_KERNELS}
    out = run_probe(tmp_path, env)
    # "start" twice: the first process printed it, then exec'd itself with the pins.
    assert out[:2] == ["start", "start"]
    assert json.loads(out[2]) == {"argv": ["--size", "demo"], **PINNED_KERNELS}


def test_an_already_pinned_process_runs_on(tmp_path):
    out = run_probe(tmp_path, {**os.environ, **PINNED_KERNELS})
    assert out[0] == "start" and json.loads(out[1])["argv"] == ["--size", "demo"]
    assert len(out) == 2


def test_pinned_needs_every_variable_at_its_value():
    assert pinned(PINNED_KERNELS)
    assert not pinned({**PINNED_KERNELS, "MKL_CBWR": "AUTO"})
    assert not pinned({})
