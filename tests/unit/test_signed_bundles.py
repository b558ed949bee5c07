"""Signed bundles (issue 12, failure 3): a bundle is accepted at start, `validate` and a SIGHUP
reload only when `signature.json` verifies against a trusted key over the exact bytes of
`manifest.json`, and the manifest's checksums match every file. An edited threshold, a swapped
model, an unknown key or a missing signature is refused naming the bundle and the reason."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import shutil as _sh
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_agent.agent import Agent, build_pipelines
from edge_agent.config import ConfigError, load_config
from edge_agent.inference.bundle import (
    MANIFEST,
    PLAIN_MANIFEST,
    SIGNATURE,
    Bundle,
    BundleError,
    BundleTrust,
    key_id,
    load_public_key,
    read_manifest,
    write_key_pair,
)
from edge_agent.reload import APPLIED, MODEL_REJECTED, reload_agent
from tests.conftest import agent_config, sign, signing_keys, tamper_threshold


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge_agent", *args], capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def bundle(trained_bundle: Bundle, tmp_path: Path) -> Path:
    """A signed copy of the session's bundle, free to edit."""
    return Path(shutil.copytree(trained_bundle.directory, tmp_path / "bundles" / "pump-1"))


def config(tmp_path: Path, bundle: Path, **bundles: Any) -> Path:
    path = agent_config(tmp_path / "agent.yaml", sim_port=1502, broker_port=1883, bundle=bundle)
    if bundles:
        data = yaml.safe_load(path.read_text())
        data["bundles"] = bundles
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def raise_threshold(bundle: Path, value: float = 99999.0) -> None:
    """What an attacker with write access to the bundle folder would do."""
    tamper_threshold(bundle, value)


def trust() -> BundleTrust:
    return BundleTrust.from_files([signing_keys()[1]])


# -- the library ---------------------------------------------------------------------------------


def test_a_valid_signature_is_accepted_and_names_its_key(bundle: Path) -> None:
    b = Bundle.load(bundle, trust())
    assert b.signed_by == key_id(load_public_key(signing_keys()[1]))
    assert not b.unsigned
    sig = json.loads((bundle / SIGNATURE).read_text())
    assert sig["algorithm"] == "ed25519" and sig["key_id"] == b.signed_by


def test_an_edited_threshold_is_refused(bundle: Path) -> None:
    raise_threshold(bundle)
    with pytest.raises(BundleError, match="invalid signature"):
        Bundle.load(bundle, trust())


def test_a_swapped_model_is_refused(bundle: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.onnx"
    other.write_bytes((bundle / "model.onnx").read_bytes() + b"\0")
    other.replace(bundle / "model.onnx")
    with pytest.raises(BundleError, match=r"model\.onnx: checksum mismatch"):
        Bundle.load(bundle, trust())


def test_a_key_not_trusted_is_refused(bundle: Path, tmp_path: Path) -> None:
    other_key, _ = write_key_pair(tmp_path / "keys", "other")
    assert cli("sign", "--bundle", str(bundle), "--key", str(other_key)).returncode == 0
    with pytest.raises(BundleError, match="signed by unknown key"):
        Bundle.load(bundle, trust())


def test_unsigned_is_refused_unless_explicitly_allowed(bundle: Path) -> None:
    (bundle / SIGNATURE).unlink()
    with pytest.raises(BundleError, match="unsigned bundle"):
        Bundle.load(bundle, trust())
    with pytest.raises(BundleError, match="unsigned bundle"):
        Bundle.load(bundle, BundleTrust())  # no keys, no switch: the default refuses
    allowing = BundleTrust(trust().keys, allow_unsigned=True)
    b = Bundle.load(bundle, allowing)
    assert b.unsigned and "UNSIGNED" in b.describe_signature()
    # A signature that is there must verify, allow_unsigned or not.
    sign(bundle)
    raise_threshold(bundle)
    with pytest.raises(BundleError, match="invalid signature"):
        Bundle.load(bundle, allowing)
    # Signed by a key this agent does not know: unverifiable, so accepted only as unsigned.
    sign(bundle)
    assert Bundle.load(bundle, BundleTrust(allow_unsigned=True)).unsigned


def test_malformed_signature_file_is_refused_not_raised(bundle: Path) -> None:
    for text in ("", "[]", '{"algorithm": "ed25519", "key_id": 1, "signature": "x"}', "\xff"):
        (bundle / SIGNATURE).write_text(text)
        with pytest.raises(BundleError):
            Bundle.load(bundle, trust())


def test_retraining_into_the_folder_removes_the_stale_signature(bundle: Path) -> None:
    from edge_agent.inference.bundle import write_manifest

    write_manifest(bundle, read_manifest(bundle))
    assert not (bundle / SIGNATURE).exists()


# -- the compressed manifest (issue 16) and the plain one --------------------------------------


def test_the_manifest_is_stored_compressed_and_written_the_same_way_twice(bundle: Path) -> None:
    from edge_agent.inference.bundle import write_manifest

    assert (bundle / MANIFEST).is_file() and not (bundle / PLAIN_MANIFEST).exists()
    stored = (bundle / MANIFEST).read_bytes()
    assert stored[:2] == b"\x1f\x8b"  # gzip
    text = gzip.decompress(stored)
    assert len(stored) < len(text) * 0.7
    write_manifest(bundle, read_manifest(bundle))
    # No time or name in the gzip header: the same manifest, the same bytes (and signature).
    assert (bundle / MANIFEST).read_bytes() == stored


def test_a_plain_manifest_edited_by_hand_and_signed_again_is_accepted(bundle: Path) -> None:
    """The documented way to edit a bundle: unpack the manifest, edit it, sign the bundle."""
    m = read_manifest(bundle)
    m["threshold"]["raise"] = m["threshold"]["raise"] * 1.5  # type: ignore[index]
    (bundle / PLAIN_MANIFEST).write_text(json.dumps(m, indent=2))
    # Both there: which one counts would be a guess.
    with pytest.raises(BundleError, match="both"):
        Bundle.load(bundle)
    (bundle / MANIFEST).unlink()
    # The signature still names the compressed manifest: refused, saying so.
    with pytest.raises(BundleError, match=r"covers 'manifest\.json\.gz'"):
        Bundle.load(bundle, trust())
    assert cli("sign", "--bundle", str(bundle), "--key", str(signing_keys()[0])).returncode == 0
    b = Bundle.load(bundle, trust())
    assert b.manifest.threshold.raise_ == m["threshold"]["raise"]  # type: ignore[index]
    assert json.loads((bundle / SIGNATURE).read_text())["signed_file"] == PLAIN_MANIFEST
    # A signature from before the compressed manifest names no file; it covered manifest.json.
    doc = json.loads((bundle / SIGNATURE).read_text())
    del doc["signed_file"]
    (bundle / SIGNATURE).write_text(json.dumps(doc))
    assert Bundle.load(bundle, trust()).signed_by == b.signed_by
    # ... and it does not cover a compressed manifest put in the plain one's place.
    (bundle / MANIFEST).write_bytes(gzip.compress((bundle / PLAIN_MANIFEST).read_bytes()))
    (bundle / PLAIN_MANIFEST).unlink()
    with pytest.raises(BundleError, match=r"covers 'manifest\.json'"):
        Bundle.load(bundle, trust())


@pytest.mark.parametrize("spoil", ["bomb", "not_gzip", "truncated", "trailing", "not_utf8"])
def test_a_hostile_compressed_manifest_is_refused_with_the_reason(bundle: Path, spoil: str) -> None:
    text = gzip.decompress((bundle / MANIFEST).read_bytes())
    data, expected = {
        # 64 MB of spaces after the JSON: a few KB compressed, refused before it is inflated.
        "bomb": (gzip.compress(text + b" " * (64 << 20)), "inflates beyond"),
        "not_gzip": (text, "not gzip data"),
        "truncated": (gzip.compress(text)[:-12], "truncated"),
        "trailing": (gzip.compress(text) + gzip.compress(b"{}"), "trailing"),
        "not_utf8": (gzip.compress(b"\xff" + text), "unreadable manifest"),
    }[spoil]
    assert len(data) < 200_000
    (bundle / MANIFEST).write_bytes(data)
    for load in (lambda: Bundle.load(bundle), lambda: read_manifest(bundle)):
        with pytest.raises(BundleError, match=expected):
            load()


def test_the_manifest_command_prints_it_indented(bundle: Path) -> None:
    r = cli("manifest", "--bundle", str(bundle))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == read_manifest(bundle)
    assert '\n  "signals": [' in r.stdout
    # Piped into a reader that stops early (`| head`): no traceback. `true` reads nothing and
    # is gone before the interpreter has started, so the write always meets a closed pipe.
    r = subprocess.run(
        f"{sys.executable} -m edge_agent manifest --bundle {bundle} | true",
        shell=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    r = cli("manifest", "--bundle", str(bundle / "nothing"))
    assert r.returncode == 2 and "no manifest" in r.stderr and "Traceback" not in r.stderr


# -- validate and run: exit 2 naming the bundle and the reason ----------------------------------


def test_validate_and_run_refuse_an_edited_threshold(bundle: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path, bundle)
    ok = cli("validate", "--config", str(cfg))
    assert ok.returncode == 0, ok.stderr
    assert "signed by key" in ok.stdout
    raise_threshold(bundle)
    for cmd in ("validate", "run"):
        r = cli(cmd, "--config", str(cfg))
        assert r.returncode == 2, (cmd, r.stdout, r.stderr)
        assert f"bundle {bundle} refused" in r.stderr and "invalid signature" in r.stderr, cmd
        assert "Traceback" not in r.stderr


def test_validate_refuses_swapped_model_unknown_key_and_unsigned(
    bundle: Path, tmp_path: Path
) -> None:
    cfg = config(tmp_path, bundle)
    with (bundle / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    r = cli("validate", "--config", str(cfg))
    assert r.returncode == 2 and "checksum mismatch" in r.stderr
    (bundle / SIGNATURE).unlink()
    r = cli("validate", "--config", str(cfg))
    assert r.returncode == 2 and "unsigned bundle" in r.stderr


def test_allow_unsigned_runs_and_says_insecure(bundle: Path, tmp_path: Path) -> None:
    (bundle / SIGNATURE).unlink()
    cfg = config(tmp_path, bundle, allow_unsigned=True)
    r = cli("validate", "--config", str(cfg))
    assert r.returncode == 0, r.stderr
    assert "UNSIGNED" in r.stdout and "INSECURE" in r.stderr


def test_trusted_keys_are_checked_with_their_field_path(bundle: Path, tmp_path: Path) -> None:
    (tmp_path / "not-a-key.pub").write_text("hello\n")
    cfg = config(tmp_path, bundle, trusted_keys=["missing.pub", "not-a-key.pub"])
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    assert err.value.errors[0].startswith("bundles.trusted_keys[0]: ")
    assert "cannot read" in err.value.errors[0]
    assert err.value.errors[1].startswith("bundles.trusted_keys[1]: ")


# -- SIGHUP reload: model_rejected naming the reason, the running model kept ---------------------


def test_reload_refuses_an_edited_threshold_and_takes_a_validly_signed_one(
    bundle: Path, tmp_path: Path
) -> None:
    cfg = load_config(config(tmp_path, bundle))
    agent = Agent(cfg, build_pipelines(cfg))
    events: list[tuple[str, str, dict[str, Any] | None]] = []
    agent.report_event = lambda t, m, sev="warning", subj=None, det=None: events.append(  # type: ignore[method-assign]
        (t, m, det)
    )
    before = agent.pipelines[0].policy.params.raise_threshold
    raise_threshold(bundle)
    assert reload_agent(agent) == MODEL_REJECTED
    ((kind, message, details),) = events
    assert kind == "model_rejected" and "invalid signature" in message
    assert details is not None and "invalid signature" in details["reason"]
    assert agent.pipelines[0].policy.params.raise_threshold == before

    # The same edit, signed by the trusted key, is a legitimate new model.
    events.clear()
    raise_threshold(bundle, before * 2)
    sign(bundle)
    assert reload_agent(agent) == APPLIED
    assert [e[0] for e in events] == ["model_loaded"]
    assert events[0][2] is not None and events[0][2]["signature"] == "verified"
    assert agent.pipelines[0].policy.params.raise_threshold == pytest.approx(before * 2)
    agent.publisher.outbox.close()


# -- keys and signing from the command line -----------------------------------------------------


def test_keys_and_sign_commands(bundle: Path, tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        r = cli("keys", "--out", str(tmp_path / "keys"))
    finally:
        os.umask(old)
    assert r.returncode == 0, r.stderr
    key, pub = tmp_path / "keys" / "bundle-signing.key", tmp_path / "keys" / "bundle-signing.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PUBLIC KEY" in pub.read_text()
    again = cli("keys", "--out", str(tmp_path / "keys"))
    assert again.returncode == 2 and "exists" in again.stderr
    raise_threshold(bundle, 12345.0)  # re-signing an edit is what the key holder may do
    assert cli("sign", "--bundle", str(bundle), "--key", str(key)).returncode == 0
    assert Bundle.load(bundle, BundleTrust.from_files([pub])).signed_by
    # Signing a bundle whose files no longer match its manifest is refused.
    with (bundle / "model.onnx").open("ab") as fh:
        fh.write(b"\0")
    r = cli("sign", "--bundle", str(bundle), "--key", str(key))
    assert r.returncode == 2 and "checksum mismatch" in r.stderr


@pytest.mark.skipif(_sh.which("openssl") is None, reason="openssl not installed")
def test_the_readme_openssl_commands_make_a_usable_key(bundle: Path, tmp_path: Path) -> None:
    key, pub = tmp_path / "signing.key", tmp_path / "signing.pub"
    subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(key)], check=True)
    subprocess.run(["openssl", "pkey", "-in", str(key), "-pubout", "-out", str(pub)], check=True)
    assert cli("sign", "--bundle", str(bundle), "--key", str(key)).returncode == 0
    cfg = config(tmp_path, bundle, trusted_keys=[str(pub)])
    r = cli("validate", "--config", str(cfg))
    assert r.returncode == 0, r.stderr


def test_unsigned_allowed_is_named_in_the_status_message_and_model_loaded(
    bundle: Path, tmp_path: Path
) -> None:
    import jsonschema

    (bundle / SIGNATURE).unlink()
    cfg = load_config(config(tmp_path, bundle, allow_unsigned=True))
    agent = Agent(cfg, build_pipelines(cfg))
    events: list[tuple[str, str, str]] = []
    agent.report_event = lambda t, m, sev="warning", subj=None, det=None: events.append(  # type: ignore[method-assign]
        (t, m, sev)
    )
    agent.report_model_loaded(agent.pipelines[0])
    ((kind, message, severity),) = events
    assert kind == "model_loaded" and severity == "warning"
    assert "UNSIGNED" in message and "INSECURE" in message
    _, payload = agent.publisher._status("online")
    body = json.loads(payload)
    assert body["unsigned_models"] == ["pump-1"]
    schema_path = Path(__file__).resolve().parents[2] / "edge_agent/alerts/schemas/status.v1.json"
    jsonschema.validate(body, json.loads(schema_path.read_text()))
    ready = agent.monitor.readiness()[1]
    assert ready["unsigned_models"] == ["pump-1"]
    agent.publisher.outbox.close()


def test_the_demo_signs_its_bundle_and_trusts_the_key(bundle: Path, tmp_path: Path) -> None:
    from simulators.demo import sign_demo_bundle, write_config

    (bundle / SIGNATURE).unlink()
    pub = sign_demo_bundle(tmp_path, bundle)
    cfg = load_config(write_config(tmp_path, 1502, 1883, bundle, pub))
    (pipeline,) = build_pipelines(cfg)
    assert pipeline.bundle.signed_by == key_id(load_public_key(pub))


def test_train_signs_with_the_given_key_and_checks_it_first(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from edge_agent.cli import main
    from edge_agent.profiles import load_profile
    from simulators.record import record
    from tests.conftest import PROFILE

    data = record(load_profile(PROFILE), tmp_path / "normal.csv", 600, 1.0, seed=2)
    fast = ["--teacher-steps", "0", "--steps", "20", "--quiet", "--signals",
            "motor_current,flow_rate,discharge_pressure", "--window", "16"]  # fmt: skip
    out = tmp_path / "b"
    bad = main(["train", "--data", str(data), "--out", str(out), *fast,
                "--signing-key", str(tmp_path / "missing.key")])  # fmt: skip
    assert bad == 2 and not out.exists()  # refused before training
    key, pub = write_key_pair(tmp_path / "keys")
    rc = main(["train", "--data", str(data), "--out", str(out), *fast, "--signing-key", str(key)])
    assert rc == 0
    assert Bundle.load(out, BundleTrust.from_files([pub])).signed_by
