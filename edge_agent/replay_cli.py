"""`edge-agent replay`: recorded CSV → the agent's own pipeline → scores.csv (+ metrics, plot).

With `--config` and `--asset` the pipeline is the one the agent builds for that asset (its name,
sources, max age, hop and update interval): a recording made by `edge-agent run --record-dir`
then yields the very alert events, ids included, that the agent published.

Several files (`--data` repeated, or a glob) are separate recordings: each runs through a fresh
pipeline (no window spans two files), scores.csv names the file of each row, and the quality
figures are pooled over the files. Every file is read and checked against the bundle before any
is replayed: a bundle signal missing from a file, or a file shorter than one window, exits 2
naming it; columns the bundle does not use only get a warning."""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_agent.config import AssetConfig, ConfigError, LoadedConfig, SignalConfig, load_config
from edge_agent.csvdata import CsvError, Table, read_table
from edge_agent.evaluation import DetectionQuality, evaluate, evaluate_pooled, is_fault
from edge_agent.inference.bundle import Bundle, BundleError
from edge_agent.pipeline import AssetPipeline
from edge_agent.replay import ReplayRow, replay


def pipeline_for(bundle: Bundle, name: str = "replay") -> AssetPipeline:
    """An asset that takes the bundle's signals, in order, from one CSV 'source'."""
    m = bundle.manifest
    asset = AssetConfig(
        name=name,
        sample_period_s=m.sample_period_s,
        bundle=bundle.directory,
        signals=[SignalConfig(name=s, source="csv") for s in m.signals],
    )
    return AssetPipeline(asset, bundle)


def pipeline_for_asset(cfg: LoadedConfig, name: str, bundle: Bundle | None = None) -> AssetPipeline:
    """The pipeline `edge-agent run` builds for asset `name`, with its bundle unless another is
    given (to try a new model on recorded data under the same asset settings)."""
    assets = {a.name: a for a in cfg.settings.assets}
    if name not in assets:
        raise ConfigError([f"assets: no asset {name!r} in {cfg.path} (have {', '.join(assets)})"])
    asset = assets[name]
    return AssetPipeline(asset, bundle or Bundle.load(cfg.bundle_dir(asset)))


def run_replay(bundle: Bundle, table: Table) -> list[ReplayRow]:
    return list(replay(pipeline_for(bundle), table))


def _quality_input(
    rows: list[ReplayRow], labels: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[float]]:
    ts = np.array([r.ts for r in rows])
    # Flagged: an alert's condition holds (not merely its episode open) or reported as bad data
    # (a stuck transmitter is a data-quality event, not an alert), as in `bench quality`.
    flagged = np.array([r.alert_active or bool(r.bad_data) for r in rows], dtype=bool)
    raised = [e.ts for r in rows for e in r.events if e.event.value == "raised"]
    raised += [r.ts for r in rows if r.bad_data_raised]
    return ts, flagged, is_fault(labels), sorted(raised)


def quality_of(rows: list[ReplayRow], labels: list[str]) -> DetectionQuality:
    return evaluate(*_quality_input(rows, labels))


def write_scores(
    path: Path, rows: list[ReplayRow], threshold: float, files: Sequence[str] | None = None
) -> None:
    """One line per input row; `files`: the file each row came from (default: empty)."""
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            [
                "file", "timestamp", "score", "threshold", "alert_active", "alert_open", "event",
                "alert_id", "bad_data",
            ]
        )  # fmt: skip
        for i, r in enumerate(rows):
            ev = r.events[-1] if r.events else None
            w.writerow(
                [
                    files[i] if files is not None else "",
                    f"{r.ts:.3f}",
                    "" if math.isnan(r.score) else f"{r.score:.6g}",
                    f"{threshold:.6g}",
                    int(r.alert_active),
                    int(r.alert_open),
                    ev.event.value if ev else "",
                    ev.alert_id if ev else "",
                    r.bad_data,
                ]
            )


def plot(
    path: Path, table: Table, bundle: Bundle, rows: list[ReplayRow], labels: list[str] | None
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = bundle.manifest
    t = (table.ts - table.ts[0]) / 60.0
    x = table.select(m.signals)
    fig, axes = plt.subplots(
        len(m.signals) + 1, 1, figsize=(12, 1.4 * (len(m.signals) + 1)), sharex=True
    )
    alert = np.array([r.alert_active for r in rows])
    fault = is_fault(labels) if labels else None
    for ax, name, col in zip(axes, m.signals, x.T, strict=False):
        ax.plot(t, col, lw=0.6)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
    score = np.array([r.score for r in rows])
    ok = ~np.isnan(score)
    axes[-1].plot(t[ok], score[ok], lw=0.7, label="score")
    axes[-1].axhline(m.threshold.raise_, color="r", ls="--", lw=0.8, label="raise threshold")
    axes[-1].set_yscale("log")
    axes[-1].set_ylabel("score", rotation=0, ha="right", fontsize=8)
    for ax in axes:
        ax.fill_between(
            t, 0, 1, where=alert, transform=ax.get_xaxis_transform(), color="r", alpha=0.15
        )
        if fault is not None:
            ax.fill_between(
                t, 0, 0.08, where=fault, transform=ax.get_xaxis_transform(), color="k", alpha=0.5
            )
    axes[-1].legend(loc="upper left", fontsize=8)
    axes[-1].set_xlabel("minutes (red: alert active; black bar: labelled fault)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def check_columns(
    table: Table, bundle: Bundle, ignore: Sequence[str] = (), warn: bool = True
) -> None:
    """Refuse data without a signal of the bundle, or shorter than one window (CsvError naming
    the file and the difference); warn about columns the bundle does not use."""
    m = bundle.manifest
    diff = table.compare(m.signals, ignore)
    if diff.missing:
        raise CsvError(
            f"{table.where}: columns do not match the bundle: {diff.describe()} "
            f"(bundle signals: {', '.join(m.signals)})"
        )
    if diff.extra and warn:
        print(
            f"edge-agent replay: warning: {table.where}: columns not in the bundle, not used: "
            f"{', '.join(diff.extra)}",
            file=sys.stderr,
        )
    if len(table.ts) < m.window:
        raise CsvError(
            f"{table.where}: {len(table.ts)} rows, fewer than one window: the bundle needs at "
            f"least {m.window} rows ({m.window} samples of {m.sample_period_s:g} s) to score one"
        )


def plot_path_for(path: Path, table: Table, files: int) -> Path:
    """The plot file itself for one file; `plot.<file>.png` for each of several."""
    if files == 1:
        return path
    return path.with_name(f"{path.stem}.{Path(table.where).stem}{path.suffix}")


def main(
    bundle_dir: Path | None,
    data: Path | Sequence[Path],
    out: Path,
    labels_col: str | None,
    plot_path: Path | None,
    config: Path | None = None,
    asset: str | None = None,
    exclude: Sequence[str] = (),
) -> int:
    """`bundle_dir` or `config` with `asset` (then `bundle_dir`, if given, replaces its bundle).
    `data`: one file or several (each its own recording); `labels_col` and `exclude` are columns
    that are not signals (already mapped by `csvdata.signal_name`)."""
    paths = [data] if isinstance(data, Path) else list(data)
    ignore = [*exclude, *([labels_col] if labels_col else [])]
    try:
        cfg = load_config(config) if config is not None and asset is not None else None
        if cfg is not None and asset is not None:
            given = Bundle.load(bundle_dir) if bundle_dir is not None else None
            pipeline = pipeline_for_asset(cfg, asset, given)
        elif bundle_dir is not None:
            pipeline = pipeline_for(Bundle.load(bundle_dir))
        else:
            raise BundleError("no bundle: pass --bundle, or --config and --asset")
        bundle = pipeline.bundle
        if not paths:
            raise CsvError("no data file")
        tables = [read_table(p) for p in paths]
        labels: list[list[str]] = []
        for table in tables:
            check_columns(table, bundle, ignore)
            if labels_col:
                labels.append(table.label_values(labels_col))
        results: list[list[ReplayRow]] = []
        for k, table in enumerate(tables):
            if k > 0:  # a fresh pipeline per file: separate recordings
                pipeline = (
                    pipeline_for_asset(cfg, asset, bundle)
                    if cfg is not None and asset is not None
                    else pipeline_for(bundle)
                )
            results.append(list(replay(pipeline, table)))
    except ConfigError as exc:
        print(f"edge-agent replay: invalid config {config}:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    except (BundleError, CsvError) as exc:
        print(f"edge-agent replay: {exc}", file=sys.stderr)
        return 2
    rows = [r for part in results for r in part]
    files = [t.where for t, part in zip(tables, results, strict=True) for _ in part]
    write_scores(out, rows, bundle.manifest.threshold.raise_, files)
    for table, part in zip(tables, results, strict=True):
        events = [e for r in part for e in r.events]
        scored = sum(not math.isnan(r.score) for r in part)
        print(
            f"{table.where}: {len(part)} samples, {scored} windows scored, "
            f"{len(events)} alert events"
        )
        for e in events:
            print(f"  {e.event.value:8s} {e.alert_id}  {e.message}")
    print(f"scores → {out}")
    if labels:
        q = evaluate_pooled(
            [_quality_input(part, lab) for part, lab in zip(results, labels, strict=True)]
        )
        pooled = f" (pooled over {len(tables)} files)" if len(tables) > 1 else ""
        print(
            f"precision {q.precision:.3f}  recall {q.recall:.3f}  F1 {q.f1:.3f}  "
            f"false alarm rate {q.false_alarm_rate:.4f}  "
            f"missed alarm rate {q.missed_alarm_rate:.3f}{pooled}\n"
            f"episodes detected {q.episodes_detected}/{q.episodes}  mean detection delay "
            f"{q.mean_delay_s:.1f} s  false alarms {q.false_alarms}"
        )
    if plot_path is not None:
        try:
            for k, (table, part) in enumerate(zip(tables, results, strict=True)):
                target = plot_path_for(plot_path, table, len(tables))
                plot(target, table, bundle, part, labels[k] if labels else None)
                print(f"plot → {target}")
        except ImportError:
            print(
                "edge-agent replay: --plot needs matplotlib (pip install matplotlib)",
                file=sys.stderr,
            )
            return 2
    return 0
