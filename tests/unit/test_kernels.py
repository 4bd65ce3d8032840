"""The demo build re-runs itself with host-independent kernels before doing any arithmetic."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT
from training.kernels import KEEP_ENVIRONMENT, PINNED_KERNELS, kernel_settings, pinned

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
    env = {k: v for k, v in os.environ.items() if k not in PINNED_KERNELS and k != KEEP_ENVIRONMENT[0]}
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


OLDER_HOST = {"MKL_CBWR": "SSE4_2,STRICT", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}


def test_keep_environment_runs_on_with_the_settings_it_was_given(tmp_path):
    # How the spread between kernel paths is measured: emulate an older host without being re-pinned.
    name, value = KEEP_ENVIRONMENT
    env = {**{k: v for k, v in os.environ.items() if k not in PINNED_KERNELS}, name: value, **OLDER_HOST}
    out = run_probe(tmp_path, env)
    assert out[0] == "start" and len(out) == 2
    assert json.loads(out[1]) == {"argv": ["--size", "demo"], **OLDER_HOST}


def test_any_other_value_of_the_variable_still_pins(tmp_path):
    env = {**{k: v for k, v in os.environ.items() if k not in PINNED_KERNELS}, KEEP_ENVIRONMENT[0]: "1"}
    out = run_probe(tmp_path, env)
    assert out[:2] == ["start", "start"]
    assert json.loads(out[2]) == {"argv": ["--size", "demo"], **PINNED_KERNELS}


def test_eval_json_records_the_settings_the_build_ran_with():
    assert kernel_settings(PINNED_KERNELS) == PINNED_KERNELS
    assert kernel_settings({"PATH": "/bin", **OLDER_HOST}) == OLDER_HOST
    assert kernel_settings({"MKL_CBWR": "AUTO"}) == {"MKL_CBWR": "AUTO"}
    assert kernel_settings({"PATH": "/bin"}) == "host default"
