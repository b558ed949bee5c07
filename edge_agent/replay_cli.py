"""`edge-agent replay`: recorded CSV → the agent's own pipeline → scores.csv (+ metrics, plot).

With `--config` and `--asset` the pipeline is the one the agent builds for that asset (its name,
sources, max age, hop and update interval): a recording made by `edge-agent run --record-dir`
then yields the very alert events, ids included, that the agent published."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np

from edge_agent.config import Asset, ConfigError, LoadedConfig, SignalRef, load_config
from edge_agent.csvdata import CsvError, Table, read_table
from edge_agent.evaluation import Quality, evaluate, is_fault
from edge_agent.inference.bundle import Bundle, BundleError
from edge_agent.pipeline import AssetPipeline
from edge_agent.replay import ReplayRow, replay


def pipeline_for(bundle: Bundle, name: str = "replay") -> AssetPipeline:
    """An asset that takes the bundle's signals, in order, from one CSV 'source'."""
    m = bundle.manifest
    asset = Asset(
        name=name,
        sample_period_s=m.sample_period_s,
        bundle=bundle.directory,
        signals=[SignalRef(name=s, source="csv") for s in m.signals],
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


def quality_of(rows: list[ReplayRow], labels: list[str]) -> Quality:
    ts = np.array([r.ts for r in rows])
    # Flagged: under an alert or reported as bad data (a stuck transmitter is a data-quality
    # event, not an alert), as in `bench quality`.
    flagged = np.array([r.alert_active or bool(r.bad_data) for r in rows], dtype=bool)
    raised = [e.ts for r in rows for e in r.events if e.event.value == "raised"]
    raised += [r.ts for r in rows if r.bad_data_raised]
    return evaluate(ts, flagged, is_fault(labels), sorted(raised))


def write_scores(path: Path, rows: list[ReplayRow], threshold: float) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["timestamp", "score", "threshold", "alert_active", "event", "alert_id", "bad_data"]
        )
        for r in rows:
            ev = r.events[-1] if r.events else None
            w.writerow(
                [
                    f"{r.ts:.3f}",
                    "" if math.isnan(r.score) else f"{r.score:.6g}",
                    f"{threshold:.6g}",
                    int(r.alert_active),
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


def main(
    bundle_dir: Path | None,
    data: Path,
    out: Path,
    labels_col: str | None,
    plot_path: Path | None,
    config: Path | None = None,
    asset: str | None = None,
) -> int:
    """`bundle_dir` or `config` with `asset` (then `bundle_dir`, if given, replaces its bundle)."""
    try:
        if config is not None and asset is not None:
            given = Bundle.load(bundle_dir) if bundle_dir is not None else None
            pipeline = pipeline_for_asset(load_config(config), asset, given)
        elif bundle_dir is not None:
            pipeline = pipeline_for(Bundle.load(bundle_dir))
        else:
            raise BundleError("no bundle: pass --bundle, or --config and --asset")
        bundle = pipeline.bundle
        table = read_table(data)
        labels = None
        if labels_col:
            if labels_col not in table.text:
                have = ", ".join(table.text) or "none"
                raise CsvError(f"{data}: no text column {labels_col!r} (have {have})")
            labels = table.text[labels_col]
        rows = list(replay(pipeline, table))
    except ConfigError as exc:
        print(f"edge-agent replay: invalid config {config}:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        return 2
    except (BundleError, CsvError) as exc:
        print(f"edge-agent replay: {exc}", file=sys.stderr)
        return 2
    write_scores(out, rows, bundle.manifest.threshold.raise_)
    events = [e for r in rows for e in r.events]
    scored = sum(not math.isnan(r.score) for r in rows)
    print(f"{len(rows)} samples, {scored} windows scored, {len(events)} alert events → {out}")
    for e in events:
        print(f"  {e.event.value:8s} {e.alert_id}  {e.message}")
    if labels is not None:
        q = quality_of(rows, labels)
        print(
            f"precision {q.precision:.3f}  recall {q.recall:.3f}  F1 {q.f1:.3f}  "
            f"false alarm rate {q.false_alarm_rate:.4f}  "
            f"missed alarm rate {q.missed_alarm_rate:.3f}\n"
            f"episodes detected {q.episodes_detected}/{q.episodes}  mean detection delay "
            f"{q.mean_delay_s:.1f} s  false alarms {q.false_alarms}"
        )
    if plot_path is not None:
        try:
            plot(plot_path, table, bundle, rows, labels)
        except ImportError:
            print(
                "edge-agent replay: --plot needs matplotlib (pip install matplotlib)",
                file=sys.stderr,
            )
            return 2
        print(f"plot → {plot_path}")
    return 0
