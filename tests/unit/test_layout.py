"""The house's layout rules (issue 13): the gateway's package stands apart from its tooling."""

from __future__ import annotations

import ast
import importlib
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from edge_agent.sources.registry import PROTOCOLS, SOURCE_TAGS, Protocol, SourceConfig

ROOT = Path(__file__).resolve().parents[2]
TOOLING = ("simulators", "bench")


def _imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_gateway_package_imports_no_tooling() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path in sorted((ROOT / "edge_agent").rglob("*.py"))
        for name in _imported_modules(path)
        if name.split(".")[0] in TOOLING
    ]
    assert not offenders, offenders


def test_layout_rule_sees_an_import_of_tooling(tmp_path: Path) -> None:
    """The rule above can fail: a function-level import is found too."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from simulators.pump import PumpSimulator\n")
    assert "simulators.pump" in _imported_modules(f)


@pytest.mark.timeout(300)
def test_gateway_wheel_holds_no_tooling(tmp_path: Path) -> None:
    """`pip install .` installs the wheel built here: only `edge_agent`, and only the `edge-agent`
    console script (edge-sim comes with tools/)."""
    # A copy of the whole checkout (minus caches): setuptools builds in the source folder.
    src = tmp_path / "src"
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "node_modules", "*cache*")
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(tmp_path), str(src)],
        check=True, capture_output=True, timeout=240, cwd=tmp_path,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("edge_agent-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
        (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = zf.read(entry_points).decode()
    assert tops == {"edge_agent"}, tops
    assert "edge-agent = edge_agent.cli:main" in scripts and "edge-sim" not in scripts


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.name)
def test_protocol_package_is_complete(protocol: Protocol) -> None:
    """Each protocol is one folder: README with a sample config that validates, golden cases,
    and its factories importable by name."""
    folder = ROOT / "edge_agent" / "sources" / protocol.name
    readme = (folder / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    assert blocks, "README has a sample config"
    adapter: TypeAdapter[list[SourceConfig]] = TypeAdapter(list[SourceConfig])
    for block in blocks:
        sources = adapter.validate_python(yaml.safe_load(block)["sources"])
        assert all(s.type in protocol.kinds for s in sources)
    assert any((folder / "testcases").iterdir())
    for _, target in protocol.kinds.values():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), target


def test_registry_drives_the_config_union() -> None:
    """A `type` the registry does not know is refused by name, not taken for another protocol."""
    adapter: TypeAdapter[SourceConfig] = TypeAdapter(SourceConfig)
    with pytest.raises(ValidationError, match="modbus_tcp"):
        adapter.validate_python({"type": "bacnet", "name": "x", "profile": "p"})
    assert {k for p in PROTOCOLS for k in p.kinds} == SOURCE_TAGS
