"""Historian exports as they come: headers, separators, decimal comma, encodings, time formats,
the sample period under jitter and holes, and bad input named by file, row and column."""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_agent.config import AssetConfig, SignalConfig
from edge_agent.csvdata import (
    CsvError,
    Table,
    expand_paths,
    read_table,
    signal_name,
    signal_names,
    split_header,
)
from edge_agent.evaluation import evaluate, evaluate_pooled
from simulators.historian import CLEAN, ExportStyle, messy, write_export

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


# --- headers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "name", "unit"),
    [
        ("flow_rate", "flow_rate", None),
        ("Flow Rate RMS", "Flow Rate RMS", None),
        ("  Flow   Rate\t[m3/h] ", "Flow Rate", "m3/h"),
        ("Flow Rate (m3/h)", "Flow Rate", "m3/h"),
        ("Flow Rate [m3/h] (avg)", "Flow Rate", "m3/h"),
        ("Motortemperatur [°C]", "Motortemperatur", "°C"),
        ("Stro\u0308m [A]", "Str\u00f6m", "A"),  # NFD → NFC
        ("Druck []", "Druck", None),
        ("[m3/h]", "[m3/h]", None),  # nothing but a bracket: the text is the name
        ("Pump (a(b))", "Pump (a(b))", None),  # nested: not a unit
    ],
)
def test_header_maps_to_signal_name_and_unit(header: str, name: str, unit: str | None) -> None:
    assert split_header(header) == (name, unit)
    assert signal_name(header) == name


@given(st.text(max_size=40))
def test_signal_name_is_idempotent(text: str) -> None:
    once = signal_name(text)
    assert signal_name(once) == once


def test_command_line_lists_and_config_names_map_like_headers() -> None:
    assert signal_names("Flow Rate [m3/h], motor_current,,") == ["Flow Rate", "motor_current"]
    for given_name in ("Flow Rate [m3/h]", "Flow  Rate", " Flow Rate (m3/h)"):
        assert SignalConfig(name=given_name, source="plc").name == "Flow Rate"
    with pytest.raises(ValueError, match="duplicate signal names: Flow Rate"):
        AssetConfig(
            name="a", sample_period_s=1.0, bundle=Path("b"),
            signals=[{"name": "Flow Rate", "source": "x"}, {"name": "Flow [l/s]", "source": "x"},
                     {"name": "Flow Rate [l/s]", "source": "x"}],
        )  # fmt: skip


# --- separators, decimal comma, encodings -----------------------------------------------------

ROWS = [("2026-01-01T00:00:00Z", "1.5", "20"), ("2026-01-01T00:00:01Z", "1.75", "21")]


@pytest.mark.parametrize("sep", [",", ";", "\t"])
def test_separator_is_sniffed_from_the_header(tmp_path: Path, sep: str) -> None:
    lines = [sep.join(["Timestamp", '"Flow, total [m3/h]"', "Temp"])]
    lines += [sep.join(r) for r in ROWS]
    t = read_table(write(tmp_path / "a.csv", "\r\n".join(lines) + "\r\n"))
    assert t.columns == ["Flow, total", "Temp"]
    assert t.units == {"Flow, total": "m3/h"}
    np.testing.assert_array_equal(t.values, [[1.5, 20], [1.75, 21]])
    np.testing.assert_array_equal(t.ts, [T0, T0 + 1])


@pytest.mark.parametrize("sep", [";", "\t"])
def test_decimal_comma(tmp_path: Path, sep: str) -> None:
    text = f"time{sep}a{sep}b\n1767225600,5{sep}1,5{sep}-2\n1767225601,5{sep}2,25{sep}1e3\n"
    t = read_table(write(tmp_path / "a.csv", text))
    np.testing.assert_array_equal(t.values, [[1.5, -2], [2.25, 1000]])
    np.testing.assert_array_equal(t.ts, [T0 + 0.5, T0 + 1.5])


def test_semicolon_with_decimal_points_stays_decimal_points(tmp_path: Path) -> None:
    t = read_table(write(tmp_path / "a.csv", "time;a\n0;1.5\n1;2\n"))
    np.testing.assert_array_equal(t.values[:, 0], [1.5, 2])


def test_excel_sep_line(tmp_path: Path) -> None:
    t = read_table(write(tmp_path / "a.csv", "sep=;\ntime;a,b\n0;1\n1;2\n"))
    assert t.columns == ["a,b"]


@pytest.mark.parametrize(
    "encode",
    [
        lambda s: s.encode("utf-8"),
        lambda s: codecs.BOM_UTF8 + s.encode("utf-8"),
        lambda s: s.encode("utf-16"),  # with a BOM
        lambda s: codecs.BOM_UTF16_BE + s.encode("utf-16-be"),
        lambda s: s.encode("utf-16-le"),  # no BOM: recognised by its zero bytes
        lambda s: s.encode("cp1252"),
    ],
    ids=["utf8", "utf8-bom", "utf16", "utf16-be", "utf16-le-no-bom", "cp1252"],
)
def test_encodings(tmp_path: Path, encode) -> None:
    text = "Zeitstempel;Motortemperatur [°C];Strom (A)\n2026-01-01 01:00:00+01:00;60,5;12\n"
    (tmp_path / "a.csv").write_bytes(encode(text))
    t = read_table(tmp_path / "a.csv")
    assert t.columns == ["Motortemperatur", "Strom"]
    assert t.units == {"Motortemperatur": "°C", "Strom": "A"}
    np.testing.assert_array_equal(t.values, [[60.5, 12]])
    assert t.ts.tolist() == [T0]


# --- time formats -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cells",
    [
        ["2026-01-01T00:00:00Z", "2026-01-01T00:00:00.250Z"],
        ["2026-01-01T00:00:00.000+00:00", "2026-01-01T05:30:00.250+05:30"],
        ["2025-12-31T19:00:00-05:00", "2025-12-31T19:00:00.25-05:00"],
        ["2026-01-01 00:00:00", "2026-01-01 00:00:00.250"],  # naive: UTC
        ["1767225600", "1767225600.25"],
        ["1767225600000", "1767225600250"],  # epoch milliseconds
    ],
)
def test_time_formats(tmp_path: Path, cells: list[str]) -> None:
    t = read_table(write(tmp_path / "a.csv", "".join(f"{c},1\n" for c in ["ts", *cells])))
    assert t.ts.tolist() == [T0, T0 + 0.25]


def test_rows_stay_in_file_order(tmp_path: Path) -> None:
    # Out of order and duplicated rows are the assembler's to drop (and count), not the reader's.
    t = read_table(write(tmp_path / "a.csv", "time,a\n0,1\n2,3\n1,2\n2,3\n"))
    assert t.ts.tolist() == [0, 2, 1, 2]


def test_time_column_found_by_name_anywhere(tmp_path: Path) -> None:
    t = read_table(write(tmp_path / "a.csv", "a,Timestamp (UTC),b\n1,0,2\n3,1,4\n"))
    assert t.columns == ["a", "b"] and t.ts.tolist() == [0, 1]


# --- the sample period ------------------------------------------------------------------------


def test_period_under_jitter_missed_rows_duplicates_and_disorder() -> None:
    rng = np.random.default_rng(3)
    for period in (1.0, 0.5, 10.0):
        ts = T0 + np.arange(3000) * period + rng.normal(0, 0.02 * min(period, 1), 3000)
        keep = rng.random(3000) > 0.05
        ts = ts[keep]
        ts = np.concatenate([ts, ts[::97]])  # duplicates
        ts[100:102] = ts[101:99:-1]  # two rows swapped
        t = Table.of(ts, ["a"], np.zeros((len(ts), 1)))
        assert t.inferred_period() == period


def test_period_of_exact_grids_and_a_restart_at_another_phase() -> None:
    for period in (0.05, 1.0, 0.2, 2.5):
        ts = np.round(T0 + np.arange(500) * period, 3)
        assert Table.of(ts, ["a"], np.zeros((500, 1))).inferred_period() == period
    # A recording stopped for an hour and restarted off the old grid.
    ts = np.concatenate([T0 + np.arange(300.0), T0 + 3600.37 + np.arange(300.0)])
    assert Table.of(ts, ["a"], np.zeros((600, 1))).inferred_period() == 1.0
    # A period that is not a round number is kept as measured.
    ts = T0 + np.arange(400) * 0.997
    assert Table.of(ts, ["a"], np.zeros((400, 1))).inferred_period() == pytest.approx(0.997)


# --- what the table offers --------------------------------------------------------------------


def test_compare_labels_and_without(tmp_path: Path) -> None:
    t = read_table(write(tmp_path / "a.csv", "time,a,run_hours,fault\n0,1,5,0\n1,2,5,1\n"))
    diff = t.compare(["a", "b"], ignore=["fault"])
    assert (diff.missing, diff.extra) == (["b"], ["run_hours"])
    assert t.label_values("fault") == ["0", "1"]  # a numeric label column
    assert t.without(["fault"]).columns == ["a", "run_hours"]
    with pytest.raises(CsvError, match=r"a\.csv: no column 'label'"):
        t.label_values("label")


def test_empty_and_text_columns(tmp_path: Path) -> None:
    text = "time,a,never,label,b\n0,1,,normal,I/O Timeout\n1,,,cavitation,3\n"
    t = read_table(write(tmp_path / "a.csv", text))
    assert t.columns == ["a", "never", "b"]  # a column never logged is a signal without values
    assert t.text == {"label": ["normal", "cavitation"]}
    assert t.bad.tolist() == [[False, False, True], [False, False, False]]
    with pytest.raises(CsvError, match=r"columns not in the data: label .*text only, no number"):
        t.select(["label"])


def test_trailing_separator_is_not_a_column(tmp_path: Path) -> None:
    t = read_table(write(tmp_path / "a.csv", "time;a;\n0;1;\n1;2;\n"))
    assert t.columns == ["a"]


def test_expand_paths(tmp_path: Path) -> None:
    for name in ("b.csv", "a.csv", "c.txt"):
        write(tmp_path / name, "time,a\n0,1\n")
    got = expand_paths([str(tmp_path / "*.csv"), str(tmp_path / "a.csv"), str(tmp_path / "c.txt")])
    assert got == [tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.txt"]
    with pytest.raises(CsvError, match=r"nothing\*\.csv: no file matches"):
        expand_paths([str(tmp_path / "nothing*.csv")])


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "a.csv: the file is empty"),
        (b"\r\n \r\n", "a.csv: the file is empty"),
        (b"time,a\n", r"a.csv: no data rows, only a header \(row 1\)"),
        (
            b"time,a\n2026-01-01T00:00:00Z,1\n\n2026-13-01T00:00:00Z,2\n",
            r"a.csv: row 4, column 'time': unrecognized timestamp '2026-13-01T00:00:00Z'",
        ),
        (b"Zeit;a\n0;1\n;2\n", r"a.csv: row 3, column 'Zeit': empty timestamp"),
        (
            b"name,a\npump,1\n",
            r"a.csv: no timestamp column: .* first column 'name' does not hold times \(row 2",
        ),
        (b"time,a\n0,1,2\n", r"a.csv: row 2: 3 cells, the header has 2"),
        (
            b"time,Flow [m3/h],Flow (l/s)\n0,1,2\n",
            r"a.csv: columns 2 \('Flow \[m3/h\]'\) and 3 \('Flow \(l/s\)'\) are both "
            r"the signal 'Flow'",
        ),
        (
            b"time,a,b\n0,1,2\n1,\x03\x04,5\n",
            r"a.csv: row 3, column 2: not text .* UTF-8, UTF-16 with a BOM or Windows-1252",
        ),
        (codecs.BOM_UTF8 + b"time,a\n0,\xff\n", r"a.csv: row 2: not valid UTF-8"),
    ],
    ids=[
        "empty", "blank", "header-only", "bad-timestamp", "empty-timestamp", "no-time-column",
        "extra-cells", "same-signal-twice", "binary", "bad-utf8-after-bom",
    ],
)  # fmt: skip
def test_bad_input_names_file_row_and_column(tmp_path: Path, content: bytes, message: str) -> None:
    (tmp_path / "a.csv").write_bytes(content)
    with pytest.raises(CsvError, match=message):
        read_table(tmp_path / "a.csv")


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(CsvError, match=r"missing\.csv: cannot read"):
        read_table(tmp_path / "missing.csv")


def test_period_needs_two_timestamps(tmp_path: Path) -> None:
    t = read_table(write(tmp_path / "a.csv", "time,a\n5,1\n5,2\n"))
    with pytest.raises(CsvError, match=r"a\.csv: cannot infer the sample period"):
        t.inferred_period()


# --- write_export → read_table ----------------------------------------------------------------

NAMES = ["Motor Current", "Vibration DE RMS", "Motor Temperature", "Flow Rate"]
UNITS = ["A", "mm/s", "°C", "m3/h"]


def grid(n: int = 600) -> tuple[np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(0)
    ts = T0 + np.arange(n, dtype=np.float64)
    values = rng.normal(size=(n, 4)) * [1, 0.1, 0.5, 2] + [40, 2.5, 60.0, 120]
    labels = ["normal"] * (n // 2) + ["cavitation"] * (n - n // 2)
    return ts, values, labels


def test_clean_export_reads_back_exactly(tmp_path: Path) -> None:
    ts, values, labels = grid()
    path = write_export(tmp_path / "a.csv", ts, NAMES, UNITS, values, labels=labels, style=CLEAN)
    t = read_table(path)
    assert t.columns == NAMES and t.units == dict(zip(NAMES, UNITS, strict=True))
    np.testing.assert_array_equal(t.ts, ts)
    np.testing.assert_allclose(t.values, values, rtol=1e-9)
    assert t.text == {"label": labels}
    assert t.inferred_period() == 1.0


@pytest.mark.parametrize("seed", range(8))
def test_messy_exports_read_back(tmp_path: Path, seed: int) -> None:
    ts, values, labels = grid()
    style = messy(seed)
    path = write_export(tmp_path / "a.csv", ts, NAMES, UNITS, values, labels=labels, style=style)
    t = read_table(path)
    assert t.columns == NAMES
    assert t.units == ({} if style.header == "plain" else dict(zip(NAMES, UNITS, strict=True)))
    assert t.inferred_period() == 1.0
    # About 5 % of the rows missed (and a few duplicated); the rest within the jitter.
    assert 0.9 * len(ts) < len(t.ts) < 0.99 * len(ts)
    k = np.round(t.ts - T0).astype(int)
    assert np.all(np.abs(t.ts - ts[k]) < 0.15)
    np.testing.assert_allclose(t.values, values[k], atol=style.quantum or 1e-6)
    assert t.text["label"] == [labels[i] for i in k]


def test_export_style_details(tmp_path: Path) -> None:
    ts, values, _ = grid(50)
    style = ExportStyle(
        sep=";", decimal_comma=True, bom=True, time_format="offset", utc_offset_min=60,
        header="parens", quantum=0.1, missed=0.0, jitter_s=0.0, duplicated=0.1,
    )  # fmt: skip
    raw = write_export(tmp_path / "a.csv", ts, NAMES, UNITS, values, style=style).read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    head, first = raw[3:].decode().splitlines()[:2]
    assert head.split(";") == [
        "Timestamp",
        *(f"{n} ({u})" for n, u in zip(NAMES, UNITS, strict=True)),
    ]
    assert first.startswith("2026-01-01T01:00:00.000+01:00;")
    assert "," in first.split(";")[1]
    t = read_table(tmp_path / "a.csv")
    assert len(t.ts) > 50  # duplicated rows
    np.testing.assert_allclose(t.values[0], np.round(values[0] / 0.1) * 0.1)


# --- pooled quality ---------------------------------------------------------------------------


def test_pooled_quality_keeps_episodes_of_different_files_apart() -> None:
    ts = np.arange(10.0)
    a_fault = np.array([0, 0, 0, 0, 0, 0, 0, 1, 1, 1], bool)
    b_fault = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], bool)
    a_alert = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1], bool)
    b_alert = np.array([0, 0, 0, 1, 0, 0, 0, 0, 0, 0], bool)
    q = evaluate_pooled([(ts, a_alert, a_fault, [8.0]), (ts, b_alert, b_fault, [3.0])])
    assert (q.episodes, q.episodes_detected, q.false_alarms) == (2, 1, 1)
    assert q.mean_delay_s == 1.0
    joined = evaluate(np.arange(20.0), np.r_[a_alert, b_alert], np.r_[a_fault, b_fault], [])
    assert joined.episodes == 1  # what concatenating the files would have said
    assert (q.precision, q.recall, q.f1) == (joined.precision, joined.recall, joined.f1)
