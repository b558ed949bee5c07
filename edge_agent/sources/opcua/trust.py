"""Whether the agent talks to a server certificate: pinned, from a trust folder, or (insecure)
any. Checked before the secure channel is opened, on the certificate the server's endpoint
offers; the channel is then opened with exactly that certificate, so the server must hold its
private key."""

from __future__ import annotations

from pathlib import Path

from asyncua.crypto.truststore import TrustStore
from cryptography import x509

from edge_agent.config_base import resolve_path
from edge_agent.sources.opcua.certs import describe, load_certificate, thumbprint
from edge_agent.sources.opcua.config import OpcUaSecurityConfig


class ServerTrust:
    def __init__(self, sec: OpcUaSecurityConfig, base: Path) -> None:
        self.pinned = resolve_path(base, sec.server_certificate) if sec.server_certificate else None
        self.trust_dir = resolve_path(base, sec.trust_dir) if sec.trust_dir else None
        self.accept_any = sec.accept_any_server_certificate

    async def refusal(self, cert: x509.Certificate) -> str | None:
        """None if `cert` is trusted, else why not (naming its thumbprint and what to do).
        Files are read at every check: a certificate dropped into the folder or a replaced pinned
        file counts at the next connect, without a restart."""
        if self.accept_any:
            return None
        if self.pinned is not None:
            pinned = load_certificate(self.pinned)
            if pinned == cert:
                return None
            return (
                f"server certificate {describe(cert)} is not the pinned one "
                f"{self.pinned} (thumbprint {thumbprint(pinned)}): if the server's certificate "
                "was renewed, check it with its administrator and pin the new one "
                "(security.server_certificate)"
            )
        assert self.trust_dir is not None
        store = TrustStore([self.trust_dir], [])
        try:
            await store.load_trust()
            trusted = store.is_trusted(cert)
            why = f"no certificate in {self.trust_dir} is it or issued it"
        except (ValueError, OSError) as exc:  # an empty folder, a file that is no certificate
            trusted = False
            why = f"the trust folder {self.trust_dir} holds no usable certificates ({exc})"
        if trusted:
            return None
        return (
            f"server certificate {describe(cert)} is not trusted: {why}; if it is the right "
            "server, put its certificate (DER or PEM) there (security.trust_dir)"
        )
