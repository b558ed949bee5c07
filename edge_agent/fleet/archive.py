"""A bundle folder as one archive for the trip over MQTT: an uncompressed tar of the files the
gateway runs on (a bundle is flat), in name order with fixed owner and times, so the same bundle
always gives the same bytes and the same sha256. The model is int8 ONNX and compresses little.
Only what the signature covers travels: the manifest, `signature.json` and the files the
manifest lists; a training report or an fp32 twin kept for comparison (`train --keep-fp32`
lists it, so it travels when kept) is not sent unless the manifest names it.

Unpacking trusts nothing of the archive beyond the digest the signed command names: only flat
regular files with plain names, bounded in count and size, are written; the bundle's own
signature and checksums are then verified as at start."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from edge_agent.fleet.commands import MAX_BUNDLE_BYTES
from edge_agent.inference.bundle import SIGNATURE, BundleError, manifest_path, read_manifest

MAX_FILES = 64


class ArchiveError(Exception):
    """An archive that is not a flat bundle folder; the message says why."""


def shipped_files(directory: Path) -> list[Path]:
    """The bundle's manifest, its signature (when signed) and the files the manifest lists."""
    try:
        manifest_name = manifest_path(directory).name
        listed = list(read_manifest(directory)["files"])  # type: ignore[call-overload]
    except BundleError as exc:
        raise ArchiveError(str(exc)) from None
    except (KeyError, TypeError) as exc:
        raise ArchiveError(f"{directory}: the manifest has no files list: {exc!r}") from None
    names = {manifest_name, SIGNATURE, *(str(f) for f in listed)}
    if bad := sorted(n for n in names if "/" in n or "\\" in n or n in ("", ".", "..")):
        raise ArchiveError(f"{directory}: {manifest_name} lists {bad[0]!r}, not a plain file name")
    return sorted(directory / n for n in names if (directory / n).is_file())


def pack_bundle(directory: Path) -> bytes:
    files = shipped_files(directory)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for p in files:
            data = p.read_bytes()
            info = tarfile.TarInfo(p.name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tf.addfile(info, io.BytesIO(data))
    return out.getvalue()


def unpack_bundle(data: bytes, dest: Path) -> None:
    """Write the archive's files into `dest` (created; must not exist)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tf:
            members = tf.getmembers()
            if len(members) > MAX_FILES:
                raise ArchiveError(f"{len(members)} files (at most {MAX_FILES})")
            total = 0
            for m in members:
                if not m.isreg():
                    raise ArchiveError(f"{m.name!r} is not a regular file")
                if "/" in m.name or "\\" in m.name or m.name in ("", ".", "..") or "\0" in m.name:
                    raise ArchiveError(f"{m.name!r} is not a plain file name")
                total += m.size
                if total > MAX_BUNDLE_BYTES:
                    raise ArchiveError(f"more than {MAX_BUNDLE_BYTES} bytes unpacked")
            dest.mkdir(parents=True)
            for m in members:
                fh = tf.extractfile(m)
                if fh is None:
                    raise ArchiveError(f"{m.name!r} cannot be read")
                (dest / m.name).write_bytes(fh.read())
    except tarfile.TarError as exc:
        raise ArchiveError(f"not a tar archive: {exc}") from None
