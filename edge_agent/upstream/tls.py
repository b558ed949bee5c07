"""The TLS context of a connection to the upstream broker, shared by the JSON publisher and the
Sparkplug B view (both connect with `upstream.mqtt`'s settings)."""

from __future__ import annotations

import ssl
from pathlib import Path

from edge_agent.config import TlsConfig


def tls_context(tls: TlsConfig | None, base_dir: Path) -> ssl.SSLContext | None:
    """None without TLS; relative file names are taken from the config file's folder."""
    if tls is None:
        return None

    def path(p: Path) -> str:
        return str(p if p.is_absolute() else base_dir / p)

    ctx = ssl.create_default_context(cafile=path(tls.ca_file))
    if tls.cert_file is not None and tls.key_file is not None:
        ctx.load_cert_chain(path(tls.cert_file), path(tls.key_file))
    return ctx
