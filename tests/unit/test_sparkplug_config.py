"""`upstream.sparkplug`: bounded ids reported with their field path (exit 2), defaults taken from
the identity, and a clear error when pysparkplug is missing."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import load_config
from edge_agent.upstream.sparkplug import config as spb_config
from tests.unit.test_upstream_config import config, errors


def test_off_by_default_and_ids_default_to_the_identity(tmp_path):
    cfg = load_config(config(tmp_path)).settings
    assert cfg.upstream.sparkplug.enabled is False
    on = load_config(config(tmp_path, sparkplug__enabled=True)).settings.upstream.sparkplug
    assert on.enabled and on.group_id is None and on.edge_node_id is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("group_id", "a/b"), ("group_id", "plant+"), ("edge_node_id", "gw#1"),
     ("edge_node_id", "x" * 129), ("group_id", ""), ("score_deadband", -1),
     ("client_id", "has space")],
)  # fmt: skip
def test_bad_values_are_reported_with_their_path(tmp_path, field, value):
    errs = errors(config(tmp_path, **{f"sparkplug__{field}": value}))
    assert any(e.startswith(f"upstream.sparkplug.{field}: ") for e in errs), errs


def test_unknown_key_is_an_error(tmp_path):
    errs = errors(config(tmp_path, sparkplug__group="x"))
    assert any(e.startswith("upstream.sparkplug.group: ") for e in errs), errs


def test_missing_pysparkplug_is_a_config_error(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        spb_config.importlib.util, "find_spec", lambda n: None if n == "pysparkplug" else real(n)
    )
    errs = errors(config(tmp_path, sparkplug__enabled=True))
    assert any(
        e.startswith("upstream.sparkplug.enabled: needs the pysparkplug package") for e in errs
    ), errs


def test_validate_exits_2_with_the_path(tmp_path: Path):
    path = config(tmp_path, sparkplug__enabled=True, sparkplug__group_id="spB/v1")
    r = subprocess.run(
        [sys.executable, "-m", "edge_agent", "validate", "--config", str(path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "upstream.sparkplug.group_id: " in r.stderr
    assert "Traceback" not in r.stderr
