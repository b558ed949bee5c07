"""`edge-agent train` then `edge-agent replay`, called as a new user would, on historian exports
of a simulated pump: missed rows, jittery timestamps, display names with spaces, units and
non-ASCII characters in the headers, regional formats, several files by glob, a label column and
a column the model does not use. Bad input exits 2 naming what is wrong, never a traceback."""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from edge_agent.cli import main
from edge_agent.csvdata import read_table
from edge_agent.inference.bundle import read_manifest
from edge_agent.profiles import load_profile
from simulators.historian import ExportStyle, write_export
from simulators.pump import PumpSimulator
from simulators.record import record
from simulators.scenarios import make_scenario
from tests.conftest import PROFILE, SEED

# Historian display names: spaces, doubled spaces, non-ASCII, units in the headers.
DISPLAY = {
    "motor_current": ("Motor Current", "A"),
    "motor_voltage": ("Motor  Voltage", "V"),
    "vibration_de": ("Vibration DE RMS", "mm/s"),
    "vibration_nde": ("Vibration NDE RMS", "mm/s"),
    "motor_temperature": ("Motortemperatur", "°C"),
    "fluid_temperature": ("Température fluide", "°C"),
    "discharge_pressure": ("Discharge Pressure", "bar"),
    "flow_rate": ("Flow Rate", "m3/h"),
    "run_hours": ("Run Hours", "h"),
}
SIGNALS = [
    "Motor Current", "Motor Voltage", "Vibration DE RMS", "Vibration NDE RMS", "Motortemperatur",
    "Température fluide", "Discharge Pressure", "Flow Rate", "Setpoint",
]  # fmt: skip
TRAIN_ROWS, TEST_ROWS = 900, 600
FAST = ["--teacher-steps", "0", "--steps", "30", "--quiet"]
# Two regional formats for the training files, a third for the test files.
SEMICOLON = ExportStyle(
    sep=";", decimal_comma=True, encoding="utf-16", time_format="epoch_ms", header="parens",
    quantum=0.001, seed=1,
)  # fmt: skip
TAB = ExportStyle(
    sep="\t", encoding="cp1252", time_format="offset", utc_offset_min=120, time_header="Zeit",
    duplicated=0.01, seed=2,
)  # fmt: skip
COMMA = ExportStyle(bom=True, time_header="Date/Time", seed=3)


def export(path: Path, csv_path: Path, style: ExportStyle, rows: slice, labels: bool) -> Path:
    """A recording of the simulator as a historian exports it, with a constant set point column."""
    t = read_table(csv_path)
    tags = [c for c in t.columns if c in DISPLAY]  # the historian has no power-factor tag
    names = [DISPLAY[c][0] for c in tags] + ["Setpoint"]
    units = [DISPLAY[c][1] for c in tags] + ["%"]
    values = np.column_stack([t.select(tags), np.full(len(t.ts), 75.0)])[rows]
    label = t.text["label"][rows] if labels else None
    return write_export(path, t.ts[rows], names, units, values, labels=label, style=style)


@dataclass
class Exports:
    train_glob: str
    test: list[Path]
    bundle: Path
    train_output: str


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """`edge-agent train` sets up logging for a process; give the test session its own back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:], root.level = handlers, level


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> Exports:
    pytest.importorskip("torch")
    d = tmp_path_factory.mktemp("historian")
    profile = load_profile(PROFILE)
    # 1 Hz, as historians export: 15 minutes of normal operation, then 10 with cavitation.
    normal = record(profile, d / "normal.csv", TRAIN_ROWS, 1.0, seed=SEED, tick=0.5)
    sim = PumpSimulator(SEED, make_scenario("cavitation", TRAIN_ROWS + 300.0))
    faulty = record(profile, d / "cav.csv", TEST_ROWS, 1.0, tick=0.5, sim=sim, warmup=TRAIN_ROWS)
    (d / "train").mkdir()
    half = TRAIN_ROWS // 2
    export(d / "train" / "part 1.csv", normal, SEMICOLON, slice(0, half), labels=False)
    export(d / "train" / "part 2.csv", normal, TAB, slice(half, None), labels=False)
    test = [
        export(d / "test-1.csv", faulty, COMMA, slice(0, 250), labels=True),
        export(d / "test-2.csv", faulty, COMMA, slice(250, None), labels=True),
    ]
    return Exports(str(d / "train" / "*.csv"), test, d / "bundle", "")


@pytest.fixture(scope="module")
def trained(exports: Exports) -> Exports:
    """`edge-agent train --data 'train/*.csv'`, leaving out the run hours (a counter, not a
    process value) by their header text."""
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(
            ["train", "--data", exports.train_glob, "--out", str(exports.bundle),
             "--exclude", "Run Hours [h]", *FAST]
        )  # fmt: skip
    assert rc == 0, err.getvalue()
    exports.train_output = err.getvalue()
    return exports


def test_train_on_messy_exports_by_glob(trained: Exports) -> None:
    m = read_manifest(trained.bundle)
    # The signals carry the header text (units split off, whitespace collapsed), in file order.
    assert set(m["signals"]) <= set(SIGNALS)
    assert set(SIGNALS) - set(m["signals"]) <= {"Setpoint"}
    units = dict(zip(m["signals"], m["units"], strict=True))
    assert units["Motortemperatur"] == "°C" and units["Flow Rate"] == "m3/h"
    assert m["sample_period_s"] == 1.0
    # Both files, and what the assembler did with them, in the training output.
    assert "2 file(s)" in trained.train_output
    # The constant set point is named, whatever training decides about it.
    assert "Setpoint" in trained.train_output
    assert "Traceback" not in trained.train_output


def test_replay_several_files_with_labels(
    trained: Exports, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores.csv"
    rc = main(
        ["replay", "--bundle", str(trained.bundle), "--data", str(trained.test[0]),
         "--data", str(trained.test[1]), "--out", str(out), "--labels", "label"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    # The column the bundle does not use is named, not fatal.
    assert "columns not in the bundle, not used: Run Hours" in captured.err
    assert "pooled over 2 files" in captured.out
    assert "episodes detected" in captured.out
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    files = [r["file"] for r in rows]
    assert files[0] == str(trained.test[0]) and files[-1] == str(trained.test[1])
    assert len(rows) == sum(len(read_table(p).ts) for p in trained.test)
    assert any(r["score"] for r in rows if r["file"] == str(trained.test[1]))


def test_replay_as_the_agent_with_config_names_in_any_spelling(
    trained: Exports, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The config may spell a signal as the export's header does (units and all)."""
    m = read_manifest(trained.bundle)
    spelled = {"Flow Rate": "Flow Rate [m3/h]", "Motor Voltage": "Motor  Voltage (V)"}
    # Replay takes each signal's values from the column of its name; the point is only a key.
    points = {" ".join(name.split()): point for point, (name, _) in DISPLAY.items()}
    points["Setpoint"] = "run_hours"
    cfg = {
        "identity": {"site": "s", "gateway": "g"},
        "sources": [
            {"type": "modbus_tcp", "name": "plc", "host": "127.0.0.1", "port": 502,
             "profile": "acme_pump_plc_fw1"}
        ],
        "assets": [
            {"name": "pump-1", "sample_period_s": 1.0, "bundle": str(trained.bundle),
             "signals": [{"name": spelled.get(s, s), "source": "plc", "point": points[s]}
                         for s in m["signals"]]}
        ],
        "upstream": {"mqtt": {"host": "127.0.0.1"}, "outbox": {"dir": str(tmp_path / "state")}},
    }  # fmt: skip
    path = tmp_path / "agent.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    rc = main(
        ["replay", "--config", str(path), "--asset", "pump-1", "--data", str(trained.test[1]),
         "--out", str(tmp_path / "o.csv"), "--exclude", "Run Hours"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "not in the bundle" not in captured.err  # excluded by name: no warning


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-signal", r"test\.csv: columns do not match the bundle: missing Flow Rate"),
        ("short", r"test\.csv: 20 rows, fewer than one window: the bundle needs at least 32 rows"),
        ("bad-time", r"test\.csv: row 7, column 'Date/Time': unrecognized timestamp 'soon'"),
        ("no-label", r"test\.csv: no column 'Label' \(have label, "),
        ("no-file", r"nothing-\*\.csv: no file matches"),
    ],
)
def test_replay_bad_input_exits_2(
    trained: Exports, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    data = tmp_path / "test.csv"
    lines = trained.test[0].read_text(encoding="utf-8-sig").splitlines()
    header = lines[0].split(",")
    if case == "missing-signal":
        drop = next(i for i, h in enumerate(header) if h.startswith("Flow Rate"))
        lines = [",".join(c for i, c in enumerate(line.split(",")) if i != drop) for line in lines]
    elif case == "short":
        lines = lines[:21]
    elif case == "bad-time":
        lines[6] = "soon," + lines[6].split(",", 1)[1]
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    args = ["replay", "--bundle", str(trained.bundle), "--out", str(tmp_path / "o.csv")]
    args += ["--data", str(tmp_path / "nothing-*.csv") if case == "no-file" else str(data)]
    args += ["--labels", "Label"] if case == "no-label" else []
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("few-rows", r"data\.csv: 1\d rows, fewer than one window: need at least 32 rows"),
        ("empty-signal", r"data\.csv: signals with no numeric values: Flow Rate"),
        ("no-signal", r"part 1\.csv: signals not in the data: Pressure"),
        ("empty-file", r"empty\.csv: the file is empty"),
    ],
)
def test_train_bad_input_exits_2(
    exports: Exports, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    source = Path(exports.train_glob).parent / "part 1.csv"
    t = read_table(source)
    data = tmp_path / "data.csv"
    names = list(t.columns)
    values = t.values.copy()
    rows = slice(None)
    if case == "few-rows":
        rows = slice(0, 20)
    elif case == "empty-signal":
        values[:, names.index("Flow Rate")] = np.nan
    write_export(data, t.ts[rows], names, [""] * len(names), values[rows], style=COMMA)
    args = ["train", "--out", str(tmp_path / "b"), *FAST]
    if case == "no-signal":
        args += ["--data", str(source), "--signals", "Flow Rate,Pressure [bar]"]
    elif case == "empty-file":
        (tmp_path / "empty.csv").write_bytes(b"")
        args += ["--data", str(tmp_path / "empty.csv")]
    else:
        args += ["--data", str(data), "--exclude", "Run Hours"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "Traceback" not in err
