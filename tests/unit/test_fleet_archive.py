"""What a bundle archive carries over MQTT (`fleet/archive.py`): the signed files only."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from edge_agent.fleet.archive import ArchiveError, pack_bundle, unpack_bundle


def bundle_dir(tmp_path: Path, listed: list[str]) -> Path:
    d = tmp_path / "b"
    d.mkdir()
    (d / "manifest.json").write_text(json.dumps({"files": {f: {} for f in listed}}))
    (d / "signature.json").write_text("{}")
    for name in ("model.onnx", "model.fp32.onnx", "report.png"):
        (d / name).write_bytes(name.encode())
    return d


def names(archive: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:") as tf:
        return tf.getnames()


def test_only_the_manifest_signature_and_listed_files_travel(tmp_path: Path) -> None:
    d = bundle_dir(tmp_path, ["model.onnx"])
    archive = pack_bundle(d)
    assert names(archive) == ["manifest.json", "model.onnx", "signature.json"]
    unpack_bundle(archive, tmp_path / "out")
    assert (tmp_path / "out" / "model.onnx").read_bytes() == b"model.onnx"
    assert pack_bundle(d) == archive  # same bundle, same bytes


def test_a_kept_fp32_twin_travels_because_the_manifest_lists_it(tmp_path: Path) -> None:
    d = bundle_dir(tmp_path, ["model.onnx", "model.fp32.onnx"])
    assert "model.fp32.onnx" in names(pack_bundle(d))


@pytest.mark.parametrize("listed", [["../etc/passwd"], ["a/b"], [".."]])
def test_a_manifest_listing_paths_is_refused(tmp_path: Path, listed: list[str]) -> None:
    with pytest.raises(ArchiveError, match="not a plain file name"):
        pack_bundle(bundle_dir(tmp_path, listed))


def test_a_folder_without_manifest_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("x")
    with pytest.raises(ArchiveError, match=r"no manifest \(manifest\.json\.gz or manifest\.json"):
        pack_bundle(tmp_path)
