"""Signed fleet commands (issue 15 item 1): every refusal has its reason, and a good command
passes. Each test changes one thing of a command that is otherwise accepted."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from edge_agent.fleet.commands import (
    MAX_COMMAND_BYTES,
    CommandRefused,
    DeployArgs,
    Target,
    Transfer,
    TransferError,
    make_command,
    sign_command,
    split_chunks,
    verify_command,
)
from edge_agent.fleet.seen import SeenFull, SeenIds
from edge_agent.inference.bundle import BundleTrust, load_private_key, write_key_pair

NOW = 1_764_650_000.0


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    key, pub = write_key_pair(d, "ops")
    other, _ = write_key_pair(d, "other")
    return key, pub, other


def trust(keys: tuple[Path, Path, Path], allow_unsigned: bool = False) -> BundleTrust:
    return BundleTrust.from_files([keys[1]], allow_unsigned)


def signed(keys: tuple[Path, Path, Path], **over: object) -> bytes:
    cmd = make_command("status", {}, Target(), NOW, 3600.0, command_id="c-1")
    if over:
        cmd = cmd.model_validate({**cmd.model_dump(by_alias=True), **over})
    return sign_command(cmd, load_private_key(keys[0]))


def refused(raw: bytes, keys: tuple[Path, Path, Path], **kw: object) -> CommandRefused:
    with pytest.raises(CommandRefused) as info:
        verify_command(raw, kw.pop("trust", trust(keys)), kw.pop("now", NOW), kw.pop("seen", set()))  # type: ignore[arg-type]
    return info.value


def test_a_signed_command_in_time_is_accepted(keys) -> None:
    v = verify_command(signed(keys), trust(keys), NOW + 10, set())
    assert v.command.id == "c-1" and v.command.action == "status"


def test_unsigned_is_refused_even_where_unsigned_bundles_are_allowed(keys) -> None:
    body = make_command("status", {}, Target(), NOW, 60.0).model_dump_json(by_alias=True)
    for raw in (body.encode(), json.dumps({"schema": "edge-agent/signed-command/1",
                                           "command": base64.b64encode(body.encode()).decode()
                                           }).encode()):  # fmt: skip
        e = refused(raw, keys, trust=trust(keys, allow_unsigned=True))
        assert "malformed command envelope" in e.reason


def test_a_key_not_trusted_is_refused(keys) -> None:
    cmd = make_command("status", {}, Target(), NOW, 60.0, command_id="c-9")
    e = refused(sign_command(cmd, load_private_key(keys[2])), keys)
    assert "unknown key" in e.reason and e.command_id == "c-9"
    assert "none configured" in refused(signed(keys), keys, trust=BundleTrust()).reason


def test_an_edited_command_fails_its_signature(keys) -> None:
    env = json.loads(signed(keys))
    body = json.loads(base64.b64decode(env["command"]))
    body["target"]["gateways"] = "*-every-gateway"
    env["command"] = base64.b64encode(json.dumps(body).encode()).decode()
    assert "invalid signature" in refused(json.dumps(env).encode(), keys).reason


def test_expired_and_future_commands_are_refused_with_skew(keys) -> None:
    raw = signed(keys)
    # Within the skew either side: accepted.
    verify_command(raw, trust(keys), NOW + 3600 + 59, set())
    verify_command(raw, trust(keys), NOW - 59, set())
    assert "expired" in refused(raw, keys, now=NOW + 3600 + 61).reason
    assert "in the future" in refused(raw, keys, now=NOW - 61).reason


def test_a_replay_is_refused(keys) -> None:
    e = refused(signed(keys), keys, seen={"c-1"})
    assert "replayed" in e.reason and e.command_id == "c-1"


def test_malformed_commands_are_refused_not_raised(keys) -> None:
    env0 = '{"schema":"edge-agent/signed-command/1",'
    for raw in (b"", b"\xff\xfe", b"[]", b"{}", env0.encode()[:-1] + b"}",
                (env0 + '"key_id":1,"signature":"","command":""}').encode(),
                (env0 + '"key_id":"a","signature":"!","command":"x"}').encode()):  # fmt: skip
        assert refused(raw, keys).reason
    # Signed but wrong inside: an unknown action, bad args, a lifetime beyond the bound.
    key = load_private_key(keys[0])
    for body in (
        {"action": "format-disk"},
        {"action": "deploy", "args": {"asset": "p"}},
        {"expires_at": NOW + 30 * 86400},
        {"extra": 1},
    ):
        good = json.loads(
            make_command("status", {}, Target(), NOW, 60).model_dump_json(by_alias=True)
        )
        raw_body = json.dumps({**good, **body}).encode()
        kid = json.loads(signed(keys))["key_id"]
        env = {"schema": "edge-agent/signed-command/1", "key_id": kid,
               "signature": base64.b64encode(key.sign(raw_body)).decode(),
               "command": base64.b64encode(raw_body).decode()}  # fmt: skip
        assert "malformed command" in refused(json.dumps(env).encode(), keys).reason, body


def test_a_signed_manifest_is_not_a_command(keys) -> None:
    """One key signs bundles and commands: manifest bytes never pass as a command."""
    key = load_private_key(keys[0])
    manifest = json.dumps({"schema_version": 1, "model_version": "x", "id": "m"}).encode()
    env = {"schema": "edge-agent/signed-command/1", "key_id": json.loads(signed(keys))["key_id"],
           "signature": base64.b64encode(key.sign(manifest)).decode(),
           "command": base64.b64encode(manifest).decode()}  # fmt: skip
    assert "malformed command" in refused(json.dumps(env).encode(), keys).reason


def test_an_oversized_command_is_refused_before_parsing(keys) -> None:
    e = refused(b"{" + b" " * MAX_COMMAND_BYTES + b"}", keys)
    assert "exceeds" in e.reason


def test_targets_match_patterns_and_explicit_lists() -> None:
    t = Target(site="plant-*", gateways="gw-1?")
    assert t.matches("plant-a", "gw-12") and not t.matches("plant-a", "gw-2")
    assert not t.matches("other", "gw-12")
    t = Target(gateways=["plant-a/gw-1"])
    assert t.matches("plant-a", "gw-1") and not t.matches("plant-b", "gw-1")


# -- the replay memory ---------------------------------------------------------------------------


def test_seen_ids_survive_a_restart_and_forget_only_expired_ones(tmp_path: Path) -> None:
    path = tmp_path / "fleet" / "seen.json"
    seen = SeenIds(path, skew_s=60)
    seen.add("a", NOW + 100, NOW)
    again = SeenIds(path, skew_s=60)
    assert "a" in again
    again.add("b", NOW + 1000, NOW + 150)  # "a" expired 50 s ago: within the skew, kept
    assert "a" in again
    again.add("c", NOW + 1000, NOW + 161)  # "a" is 61 s past expiry: forgotten
    assert "a" not in again and "b" in again and "c" in again
    assert (path.stat().st_mode & 0o777) == 0o600


def test_a_full_memory_refuses_rather_than_forgets(tmp_path: Path) -> None:
    seen = SeenIds(tmp_path / "seen.json", skew_s=0, limit=2)
    seen.add("a", NOW + 10, NOW)
    seen.add("b", NOW + 10, NOW)
    with pytest.raises(SeenFull):
        seen.add("c", NOW + 10, NOW)
    seen.add("c", NOW + 10, NOW + 11)  # a and b expired: room again


def test_a_corrupt_memory_starts_empty(tmp_path: Path) -> None:
    (tmp_path / "seen.json").write_text("{not json")
    assert len(SeenIds(tmp_path / "seen.json", 60)) == 0


# -- chunked transfer ----------------------------------------------------------------------------


def deploy_args(data: bytes, chunk: int, digest: str | None = None) -> DeployArgs:
    n = -(-len(data) // chunk)
    return DeployArgs(asset="pump-1", sha256=digest or hashlib.sha256(data).hexdigest(),
                      bytes=len(data), chunks=n, chunk_bytes=chunk)  # fmt: skip


def test_chunks_in_order_complete_and_redeliveries_are_ignored() -> None:
    data = bytes(range(256)) * 41
    t = Transfer("c", deploy_args(data, 1000))
    parts = split_chunks(data, 1000)
    assert len(parts) == 11
    for i, p in enumerate(parts):
        assert t.add(i, p) is (i == 10)
        if i == 3:
            assert t.add(2, parts[2]) is False  # QoS 1 redelivery
    assert t.data() == data


def test_a_missing_or_out_of_order_chunk_is_refused() -> None:
    data = b"x" * 3000
    t = Transfer("c", deploy_args(data, 1000))
    t.add(0, data[:1000])
    with pytest.raises(TransferError, match="chunk 2 arrived before chunk 1"):
        t.add(2, data[2000:])
    with pytest.raises(TransferError, match="beyond"):
        Transfer("c", deploy_args(data, 1000)).add(3, b"")


def test_a_wrong_size_or_digest_is_refused() -> None:
    data = b"x" * 2500
    with pytest.raises(TransferError, match="expected 1000"):
        Transfer("c", deploy_args(data, 1000)).add(0, b"x" * 999)
    t = Transfer("c", deploy_args(data, 1000, digest="0" * 64))
    t.add(0, data[:1000])
    t.add(1, data[1000:2000])
    with pytest.raises(TransferError, match="digest mismatch"):
        t.add(2, data[2000:])


def test_deploy_args_must_add_up() -> None:
    with pytest.raises(ValueError, match="cannot hold"):
        DeployArgs(asset="a", sha256="0" * 64, bytes=3000, chunks=2, chunk_bytes=1000)


# -- the operator's command line: arguments refused before any connection -----------------------


def test_fleet_cli_refuses_an_unsigned_bundle_and_a_bad_key(
    tmp_path: Path, keys: tuple[Path, Path, Path]
) -> None:
    import subprocess
    import sys

    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "manifest.json").write_text("{}")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "edge_agent", "fleet", "deploy", "--bundle", str(bundle),
             "--asset", "pump-1", "--port", "1", *args],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip

    r = run("--key", str(keys[0]))
    assert r.returncode == 2 and "not signed" in r.stderr
    r = run("--key", str(keys[1]))  # a public key is not a signing key
    assert r.returncode == 2 and "--key" in r.stderr
