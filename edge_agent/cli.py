"""`edge-agent` command line: run, validate, status, train, keys, sign, replay, opcua-cert,
fleet; and `demo` and `bench` where the tools are installed (plugins, see `add_plugin_commands`).

Exit codes: 0 ok, 1 runtime failure (`status`: unhealthy), 2 bad configuration / bundle / input
data, unreadable config, state directory not writable, metrics port in use (the unit lists 2 in
`RestartPreventExitStatus=`, so systemd does not restart a misconfigured agent in a loop; 2 rather
than EX_CONFIG 78 because `validate` has always used it).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.config import ConfigError, LoadedConfig, load_config
from edge_agent.config_base import resolve_path
from edge_agent.inference.bundle import BundleError
from edge_agent.sources.base import read_password_file

if TYPE_CHECKING:
    from edge_agent.csvdata import Table

EXIT_CONFIG = 2
log = logging.getLogger("edge_agent")


def _config_path(arg: str | None) -> Path:
    value = arg or os.environ.get("EDGE_AGENT_CONFIG")
    if not value:
        print("edge-agent: no config: pass --config FILE or set EDGE_AGENT_CONFIG", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    return Path(value)


def _load(arg: str | None, *, files: bool = True) -> LoadedConfig:
    path = _config_path(arg)
    try:
        return load_config(path, files=files)
    except ConfigError as exc:
        print(f"edge-agent: invalid config {path}:", file=sys.stderr)
        for line in exc.errors:
            print(f"  {line}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def _read_password(cfg: LoadedConfig) -> str | None:
    """The MQTT password from a file, a systemd credential or an environment variable.
    The value is never printed or logged."""
    mqtt = cfg.settings.upstream.mqtt
    if mqtt.password_credential is not None:
        creds = os.environ.get("CREDENTIALS_DIRECTORY")
        if not creds:
            print(
                "edge-agent: upstream.mqtt.password_credential: $CREDENTIALS_DIRECTORY is not set "
                "(use LoadCredential= in the systemd unit)",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_CONFIG)
        return _read_secret(Path(creds) / mqtt.password_credential, "password_credential")
    if mqtt.password_file is not None:
        return _read_secret(resolve_path(cfg.path.parent, mqtt.password_file), "password_file")
    return os.environ.get(mqtt.password_env)


def _read_secret(path: Path, field: str) -> str:
    """A secret read as the sources read theirs; an unreadable one is a configuration error."""
    try:
        return read_password_file(path) or ""
    except OSError as exc:
        print(
            f"edge-agent: upstream.mqtt.{field}: cannot read {path}: {exc.strerror}",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_CONFIG) from None


def cmd_validate(args: argparse.Namespace) -> int:
    from edge_agent.agent import build_pipelines

    cfg = _load(args.config)
    try:
        pipelines = build_pipelines(cfg)
    except (BundleError, ValueError) as exc:
        print(f"edge-agent: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    s = cfg.settings
    print(
        f"config OK: {len(s.sources)} source(s), {len(s.assets)} asset(s); models: "
        + ", ".join(
            f"{p.name}={p.model_version} ({p.bundle.describe_signature()})" for p in pipelines
        )
    )
    for p in pipelines:
        if p.bundle.unsigned:
            print(
                f"edge-agent: INSECURE: asset {p.name}: bundle {p.bundle.directory} is unsigned "
                "and accepted only because bundles.allow_unsigned is set",
                file=sys.stderr,
            )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from edge_agent.agent import Agent, MetricsStartupError, build_pipelines, run_until_signal
    from edge_agent.inference.detector import DetectorPool
    from edge_agent.logs import setup_logging
    from edge_agent.sources.base import SourceStartupError
    from edge_agent.stop_watchdog import StopWatchdog

    cfg = _load(args.config)
    setup_logging(cfg.settings.logging.level, cfg.settings.logging.format)
    detectors = DetectorPool()
    try:
        pipelines = build_pipelines(cfg, detectors)
    except (BundleError, ValueError) as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
    record_dir = Path(args.record_dir) if args.record_dir else None
    agent = Agent(
        cfg, pipelines, password=_read_password(cfg), record_dir=record_dir, detectors=detectors
    )
    try:
        agent.publisher.open()
    except OSError as exc:
        log.error("upstream.outbox.dir: %s", exc)
        return EXIT_CONFIG
    startup_errors: list[BaseException] = []
    watchdog = StopWatchdog()
    try:
        asyncio.run(run_until_signal(agent, watchdog))
    except* SourceStartupError as group:
        # A strict source found signals the device does not have (exit 2 like a config error).
        startup_errors.extend(group.exceptions)
    except* MetricsStartupError as group:
        startup_errors.extend(group.exceptions)
    finally:
        watchdog.disarm()  # the loop and its shutdown are done
    for err in startup_errors:
        log.error("%s", err)
    return EXIT_CONFIG if startup_errors else 0


def cmd_train(args: argparse.Namespace) -> int:
    from edge_agent.logs import setup_logging

    setup_logging("INFO", "text")
    try:
        from edge_agent.training.train import TrainingError, TrainOptions, train_bundle
    except ImportError as exc:
        print(
            f"edge-agent train needs the training extra ({exc.name} is missing): "
            "pip install 'edge-agent[train]'",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    from edge_agent.csvdata import CsvError, expand_paths, read_table, signal_name, signal_names
    from edge_agent.inference.bundle import key_id, load_private_key, sign_bundle

    signing_key = None
    if args.signing_key:
        # Read before training: a wrong key path should not cost a training run.
        try:
            signing_key = load_private_key(Path(args.signing_key))
        except BundleError as exc:
            print(f"edge-agent train: --signing-key: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    expected_period: float | None = None
    units: list[str] | None = None
    window, hop = args.window, args.hop
    name = "model"
    signals: list[str] = []
    energy = None  # the asset's energy points: with them in the data, an efficiency model
    if args.config:
        cfg = _load(args.config)
        assets = {a.name: a for a in cfg.settings.assets}
        if args.asset not in assets:
            print(
                f"edge-agent: --asset: {args.asset!r} not in config (have {', '.join(assets)})",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        asset = assets[args.asset]
        signals = [s.name for s in asset.signals]
        expected_period = asset.sample_period_s
        units = [cfg.profiles[s.source].unit_of(s.point_name) for s in asset.signals]
        window = window or asset.window
        hop = hop or asset.hop
        name = asset.name
        from edge_agent.energy.stage import energy_signals

        found = energy_signals(asset, cfg.profiles)
        energy = None if isinstance(found, str) else found
    try:
        tables = [read_table(p) for p in expand_paths(args.data)]
        excluded = set(signal_names(args.labels)) | set(signal_names(args.exclude))
        if not args.config:
            signals = signal_names(args.signals) or [
                c for c in tables[0].columns if c not in excluded
            ]
            if not signals:
                raise CsvError(f"{tables[0].where}: no numeric column to train on")
            if any(t.units for t in tables):
                units = [next((t.units[s] for t in tables if s in t.units), "") for s in signals]
        window = window or 32
        _check_training_files(tables, signals, excluded, window)
        opts = TrainOptions(
            window=window,
            hop=hop or max(1, window // 8),
            max_steps=args.steps,
            seed=args.seed,
            teacher_steps=args.teacher_steps,
            judge_levels={"auto": None, "on": True, "off": False}[args.levels],
            keep_fp32=args.keep_fp32,
            progress=sys.stderr.isatty() and not args.quiet,
        )
        faults = [read_table(p) for p in expand_paths(args.faults or [])]
        bundle = train_bundle(
            tables, signals, Path(args.out), opts, expected_period, units, name=name,
            faults=faults, label_column=signal_name(args.label_column), energy=energy,
        )  # fmt: skip
    except (CsvError, TrainingError) as exc:
        print(f"edge-agent train: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if signing_key is not None:
        sign_bundle(bundle.directory, signing_key)
    else:
        print(
            f"edge-agent train: {bundle.directory} is not signed; agents refuse it unless "
            "bundles.allow_unsigned is set (sign it: edge-agent sign --bundle DIR --key FILE)",
            file=sys.stderr,
        )
    m = bundle.manifest
    print(
        f"bundle {bundle.directory}: {m.model_version}; signals {len(m.signals)}, "
        f"window {m.window}, "
        f"threshold raise {m.threshold.raise_:.4g} clear {m.threshold.clear:.4g}; "
        f"int8 vs fp32 decision agreement {m.agreement['int8_vs_fp32_decision_agreement']:.4f}"
        + (
            f"; signed by key {key_id(signing_key.public_key())}"
            if signing_key is not None
            else "; unsigned"
        )
        + (
            f"; fault classes {', '.join(m.classifier.labels)} (held-out accuracy "
            f"{m.classifier.validation_accuracy})"
            if m.classifier
            else ""
        )
    )
    return 0


def _check_training_files(
    tables: list[Table], signals: list[str], excluded: set[str], window: int
) -> None:
    """Every file has every signal and the same sample period (else CsvError naming the file);
    columns left unused and files too short to give a window are named on stderr."""
    import numpy as np

    from edge_agent.csvdata import CsvError

    rows = sum(len(t.ts) for t in tables)
    where = tables[0].where if len(tables) == 1 else f"{len(tables)} files"
    if rows < window:
        raise CsvError(
            f"{where}: {rows} rows, fewer than one window: need at least {window} rows for "
            f"window {window}, and about {window * 6} to train and calibrate"
        )
    first = tables[0].inferred_period()
    for t in tables:
        diff = t.compare(signals, excluded)
        if diff.missing:
            raise CsvError(
                f"{t.where}: signals not in the data: {', '.join(diff.missing)} "
                f"(have {', '.join(t.columns) or 'no numeric column'})"
            )
        if diff.extra:
            print(
                f"edge-agent train: {t.where}: columns not trained on: {', '.join(diff.extra)}",
                file=sys.stderr,
            )
        period = t.inferred_period()
        if abs(period - first) > 0.01 * first:
            raise CsvError(
                f"{t.where}: sample period {period:g} s differs from {first:g} s of "
                f"{tables[0].where}"
            )
        if len(t.ts) < window:
            print(
                f"edge-agent train: {t.where}: {len(t.ts)} rows, fewer than one window of "
                f"{window}: no window comes from this file",
                file=sys.stderr,
            )
    empty = [s for s in signals if not any(np.isfinite(t.select([s])).any() for t in tables)]
    if empty:
        raise CsvError(f"{where}: signals with no numeric values: {', '.join(empty)}")


def cmd_replay(args: argparse.Namespace) -> int:
    from edge_agent.csvdata import CsvError, expand_paths, signal_name, signal_names
    from edge_agent.replay_cli import main as replay_main

    plot = Path(args.plot) if args.plot else None
    bundle = Path(args.bundle) if args.bundle else None
    config = Path(args.config) if args.config else None
    try:
        paths = expand_paths(args.data)
    except CsvError as exc:
        print(f"edge-agent replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    labels = signal_name(args.labels) if args.labels else None
    return replay_main(
        bundle, paths, Path(args.out), labels, plot, config, args.asset,
        exclude=signal_names(args.exclude),
    )  # fmt: skip


def cmd_status(args: argparse.Namespace) -> int:
    """Ask a running agent (its /healthz and /readyz on the configured metrics port)."""
    from edge_agent.observability.client import print_status

    cfg = _load(args.config, files=False)  # the operator's user need not read the agent's files
    m = cfg.settings.observability.metrics
    if not m.enabled or m.port == 0:
        print(
            "edge-agent: observability.metrics: status needs the endpoint enabled on a fixed port",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    host = "127.0.0.1" if m.host in ("0.0.0.0", "") else "::1" if m.host == "::" else m.host
    return print_status(host, m.port, timeout=args.timeout)


def cmd_opcua_cert(args: argparse.Namespace) -> int:
    """Make the agent's OPC UA client key and certificate, and say where they go."""
    import ipaddress
    import socket

    from edge_agent.sources.opcua.certs import (
        CertificateError,
        default_application_uri,
        make_client_certificate,
        thumbprint,
        write_client_files,
    )

    host = socket.gethostname()
    uri = args.uri or default_application_uri(host)
    dns = args.dns if args.dns is not None else [host]
    try:
        for ip in args.ip:
            ipaddress.ip_address(ip)
        made = make_client_certificate(
            uri, dns, args.ip, args.days, name=args.name or f"edge-agent@{host}"
        )
        key_path, cert_path = write_client_files(Path(args.out), made, force=args.force)
    except (CertificateError, ValueError) as exc:
        print(f"edge-agent opcua-cert: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"edge-agent opcua-cert: {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    c = made.cert
    print(
        f"wrote {key_path} (private key, mode 0600: stays on this gateway)\n"
        f"wrote {cert_path} (certificate, DER)\n"
        f"  application URI   {uri}\n"
        f"  DNS names         {', '.join(dns) or '-'}\n"
        f"  IP addresses      {', '.join(args.ip) or '-'}\n"
        f"  valid             {c.not_valid_before_utc:%Y-%m-%d} to "
        f"{c.not_valid_after_utc:%Y-%m-%d}\n"
        f"  SHA-1 thumbprint  {thumbprint(c)}\n"
        "\n"
        "In the agent's config (the application URI is taken from the certificate):\n"
        f"  security: {{policy: Basic256Sha256, mode: SignAndEncrypt, certificate: {cert_path},\n"
        f"             private_key: {key_path}, server_certificate: server.der}}\n"
        "  (server.der: the server's own certificate, from its administrator; or trust_dir:\n"
        "  a folder of trusted server or CA certificates)\n"
        "Give the server's administrator client.der (not the key) to add to the server's\n"
        "trusted client certificates, and the thumbprint above to check it by:\n"
        "  node-opcua: copy it into PKI/trusted/certs/\n"
        "  KEPServerEX: OPC UA Configuration Manager, Trusted Clients, Import\n"
        "  UA .NET based servers: pki/trusted/certs/ (or trust it among the rejected\n"
        "  certificates after the agent's first attempt, matching the thumbprint)"
    )
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    """Make a bundle signing key pair."""
    from edge_agent.inference.bundle import key_id, load_public_key, write_key_pair

    try:
        key_path, pub_path = write_key_pair(Path(args.out), args.name, force=args.force)
    except BundleError as exc:
        print(f"edge-agent keys: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"edge-agent keys: {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"wrote {key_path} (private signing key, mode 0600: keep it where bundles are trained, "
        "never on a gateway)\n"
        f"wrote {pub_path} (public key: copy it to the gateways)\n"
        f"  key id  {key_id(load_public_key(pub_path))}\n"
        "\n"
        f"Sign: edge-agent train ... --signing-key {key_path}\n"
        f"  or: edge-agent sign --bundle BUNDLE_DIR --key {key_path}\n"
        "In the agent's config:\n"
        f"  bundles: {{trusted_keys: [/etc/edge-agent/{pub_path.name}]}}"
    )
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    """Sign a bundle trained elsewhere (its checksums are verified first)."""
    from edge_agent.inference.bundle import key_id, load_private_key, manifest_path, sign_bundle

    try:
        key = load_private_key(Path(args.key))
        written = sign_bundle(Path(args.bundle), key)
    except BundleError as exc:
        print(f"edge-agent sign: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except OSError as exc:
        print(f"edge-agent sign: {args.bundle}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_CONFIG
    manifest = manifest_path(Path(args.bundle)).name
    print(f"wrote {written}: {manifest} signed by key {key_id(key.public_key())}")
    return 0


def cmd_manifest(args: argparse.Namespace) -> int:
    """Print a bundle's manifest as indented JSON (it is stored gzip-compressed)."""
    import json

    from edge_agent.inference.bundle import BundleError, read_manifest

    try:
        manifest = read_manifest(Path(args.bundle))
    except BundleError as exc:
        print(f"edge-agent manifest: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        print(json.dumps(manifest, indent=2, ensure_ascii=False), flush=True)
    except BrokenPipeError:
        # `edge-agent manifest ... | head`: the reader has what it wanted. Point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


# Commands that tools distributions add to `edge-agent` (entry points: name = "module:register",
# `register(subparsers)` adds the command). The gateway's package never imports its tooling; a
# gateway without the tools still knows these names and says where they come from.
PLUGIN_GROUP = "edge_agent.commands"
TOOL_COMMANDS = {
    "demo": "simulator + training + agent + broker on this machine",
    "bench": "measure figures on this machine",
}


def _not_installed(args: argparse.Namespace) -> int:
    print(
        f"edge-agent {args.cmd}: not installed here: it comes with the development tools "
        "(`pip install -e tools` in a checkout, or `bash dev.sh`); a gateway does not need them",
        file=sys.stderr,
    )
    return EXIT_CONFIG


def add_plugin_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    found: set[str] = set()
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            ep.load()(sub)
        except Exception as exc:  # a broken tool must not stop `edge-agent run`
            print(
                f"edge-agent: command {ep.name!r} ({ep.value}) not loaded: {exc}", file=sys.stderr
            )
            continue
        found.add(ep.name)
    for name, text in TOOL_COMMANDS.items():
        if name not in found:
            p = sub.add_parser(name, help=f"{text} (not installed: development tools)")
            p.add_argument("rest", nargs=argparse.REMAINDER)
            p.set_defaults(func=_not_installed)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edge-agent", description="Edge gateway anomaly agent")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run the agent")
    p.add_argument("--config", help="YAML config (default: $EDGE_AGENT_CONFIG)")
    p.add_argument(
        "--record-dir",
        help="record each asset's input to DIR/<asset>.csv, for `replay --config --asset`",
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("validate", help="check a config and its bundles; exit 2 on errors")
    p.add_argument("--config")
    p.set_defaults(func=cmd_validate)
    p = sub.add_parser("status", help="health of the running agent: exit 0 healthy, 1 not")
    p.add_argument("--config")
    p.add_argument("--timeout", type=float, default=5.0)
    p.set_defaults(func=cmd_status)
    p = sub.add_parser(
        "opcua-cert", help="make the OPC UA client key and certificate strict servers accept"
    )
    p.add_argument("--out", required=True, help="folder for client_key.pem and client.der")
    p.add_argument("--uri", help="application URI (default: urn:<hostname>:edge-agent)")
    p.add_argument(
        "--dns", action="append", help="DNS name of this gateway (repeatable; default: hostname)"
    )
    p.add_argument("--ip", action="append", default=[], help="IP address (repeatable)")
    p.add_argument("--days", type=int, default=1825, help="validity in days (default: 5 years)")
    p.add_argument("--name", help="application name, the subject CN (default: edge-agent@host)")
    p.add_argument("--force", action="store_true", help="replace an existing key and certificate")
    p.set_defaults(func=cmd_opcua_cert)
    p = sub.add_parser("train", help="train a model bundle from normal data (extra: train)")
    p.add_argument(
        "--data",
        required=True,
        action="append",
        help="CSV of normal operation; repeatable, globs allowed; each file is its own recording",
    )
    p.add_argument("--out", required=True, help="bundle directory to write")
    p.add_argument("--config", help="agent config: take signals and sample period from --asset")
    p.add_argument("--asset")
    p.add_argument("--signals", help="comma-separated columns (default: all numeric)")
    p.add_argument("--labels", help="comma-separated label columns, left out of the signals")
    p.add_argument("--exclude", help="comma-separated columns to leave out of the signals")
    p.add_argument("--window", type=int)
    p.add_argument("--hop", type=int)
    p.add_argument(
        "--faults",
        action="append",
        help="labelled CSV with fault data (repeatable); trains a fault classifier head",
    )
    p.add_argument("--label-column", default="label", help="label column of --faults files")
    p.add_argument(
        "--teacher-steps",
        type=int,
        help="teacher optimizer steps (default: scaled to the data); 0: no teacher",
    )
    p.add_argument("--steps", type=int, help="student optimizer steps (default: scaled)")
    p.add_argument(
        "--levels",
        choices=["auto", "on", "off"],
        default="auto",
        help="judge absolute window levels: auto = only from an hour of data or more (minutes "
        "cannot show where levels go); level shifts are judged either way",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--keep-fp32",
        action="store_true",
        help="also put the float model (model.fp32.onnx) in the bundle, for comparisons; the "
        "gateway runs only the int8 model.onnx",
    )
    p.add_argument("--quiet", action="store_true")
    p.add_argument(
        "--signing-key",
        help="ed25519 private key (PEM; `edge-agent keys`) to sign the bundle with",
    )
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("keys", help="make an ed25519 key pair for signing bundles")
    p.add_argument("--out", required=True, help="folder for NAME.key (0600) and NAME.pub")
    p.add_argument("--name", default="bundle-signing", help="file name stem")
    p.add_argument("--force", action="store_true", help="replace an existing key pair")
    p.set_defaults(func=cmd_keys)
    p = sub.add_parser("sign", help="sign a model bundle (signature.json over its manifest)")
    p.add_argument("--bundle", required=True, help="bundle directory")
    p.add_argument("--key", required=True, help="ed25519 private key (PEM)")
    p.set_defaults(func=cmd_sign)
    p = sub.add_parser("manifest", help="print a model bundle's manifest (indented JSON)")
    p.add_argument("--bundle", required=True, help="bundle directory")
    p.set_defaults(func=cmd_manifest)
    p = sub.add_parser("replay", help="run recorded CSV through the agent's pipeline")
    p.add_argument("--bundle", help="model bundle (default with --config: the asset's)")
    p.add_argument("--config", help="agent config: replay as the agent runs --asset")
    p.add_argument("--asset")
    p.add_argument(
        "--data",
        required=True,
        action="append",
        help="CSV: a timestamp column, one column per signal; repeatable, globs allowed; "
        "each file is its own recording",
    )
    p.add_argument("--out", required=True, help="per-sample scores and alert state (CSV)")
    p.add_argument("--labels", help="label column: prints precision/recall/F1/delays")
    p.add_argument("--exclude", help="comma-separated columns that are not signals (no warning)")
    p.add_argument("--plot", help="PNG with signals, score, threshold, alerts and labels")
    p.set_defaults(func=cmd_replay)
    from edge_agent.fleet.cli import register as register_fleet

    register_fleet(sub)
    # The tools' commands are looked up (entry points: every installed distribution's metadata
    # read, the tools' modules imported) only when the command is not one of the agent's own:
    # a running agent keeps none of that in its memory (issue 16).
    words = sys.argv[1:] if argv is None else argv
    command = next((w for w in words if not w.startswith("-")), None)
    if command not in sub.choices:
        add_plugin_commands(sub)
    args = ap.parse_args(argv)
    if args.cmd in ("train", "replay") and bool(args.config) != bool(args.asset):
        ap.error("--config and --asset go together")
    if args.cmd == "replay" and not (args.bundle or args.config):
        ap.error("replay needs --bundle, or --config and --asset")
    rc: int = args.func(args)
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
