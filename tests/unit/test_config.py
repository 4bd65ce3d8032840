import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from deployments.core.config import AppArgs


def test_typos_are_refused():
    with pytest.raises(ValidationError):
        AppArgs(modle="x")
    with pytest.raises(ValidationError):
        AppArgs(batching={"max_batch_sise": 3})


def test_inconsistent_settings_are_refused():
    with pytest.raises(ValidationError, match="window_overlap"):
        AppArgs(max_length=64, window_overlap=62)
    with pytest.raises(ValidationError, match="windows_per_call"):
        AppArgs(windows_per_call=64, batching={"max_batch_size": 32})


def test_chs_model_overrides_the_model(monkeypatch):
    monkeypatch.setenv("CHS_MODEL", "/models/x")
    assert AppArgs(model="a/b").resolved_model() == "/models/x"
    monkeypatch.delenv("CHS_MODEL")
    assert AppArgs(model="a/b").resolved_model() == "a/b"


ROOT = Path(__file__).resolve().parents[2]
CHS_NAME = re.compile(r"\bCHS_[A-Z][A-Z_]*[A-Z]\b")


def _readme_env_table() -> dict[str, str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8").split("### Environment", 1)[1]
    rows = {}
    for line in text.splitlines()[1:]:
        if line.startswith("## ") or line.startswith("### "):
            break
        if line.startswith("| `"):
            names, reader = line.split("|")[1:3]
            for name in re.findall(r"`(CHS_[A-Z_]+)`", names):
                rows[name] = reader.strip()
    return rows


def test_every_variable_the_service_reads_is_declared_in_config_and_listed_in_the_readme():
    from deployments.core import config

    table = _readme_env_table()
    assert {name for name, reader in table.items() if reader == "service"} == set(config.ENV_VARS)
    # Outside config.py, the service's code names these variables only through config's constants.
    for path in sorted((ROOT / "deployments").rglob("*.py")):
        if path.name == "config.py":
            continue
        literals = set(CHS_NAME.findall(path.read_text(encoding="utf-8")))
        strings = {n for n in literals if f'"{n}"' in path.read_text(encoding="utf-8")}
        assert not strings, f"{path.relative_to(ROOT)} spells {sorted(strings)}: use deployments/core/config.py's names"


def test_every_chs_variable_in_the_tree_is_in_the_readme_table():
    table = _readme_env_table()
    used = set()
    for folder in ("deployments", "clients", "training", "bench", "tests"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            used |= {n for n in CHS_NAME.findall(text) if f'"{n}"' in text or f"'{n}'" in text}
    assert used - set(table) == set(), sorted(used - set(table))
