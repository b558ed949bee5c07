"""Why an OPC UA server would not give us a session, in words a field engineer can act on.

Pure: a status code name (or an exception and the connect phase it came from) in, a `Refusal`
out. The source logs it once (rate-limited), counts it as `refused_<kind>` and sends it with the
`source_offline` event.

Servers do not always say why. node-opcua, like several embedded servers, closes the connection
during OpenSecureChannel when it does not trust the client certificate; asyncua then fails to
parse the answer (AssertionError, NotEnoughData, a closed connection). A failure in that phase
with security on is therefore reported as the server not trusting our certificate, which is by
far the most common cause.
"""

from __future__ import annotations

from dataclasses import dataclass

from asyncua.ua.uaerrors import UaStatusCodeError


@dataclass(frozen=True)
class Refusal:
    kind: str  # counted as edge_agent_source_errors{kind="refused_<kind>"}
    message: str  # one line: what happened and what to do

    @property
    def counter(self) -> str:
        return f"refused_{self.kind}"


@dataclass(frozen=True)
class Context:
    """What the messages name."""

    endpoint: str
    application_uri: str
    secure: bool
    certificate: str | None = None  # the client certificate file
    thumbprint: str | None = None  # of the client certificate
    username: str | None = None


def _ours(ctx: Context) -> str:
    if ctx.certificate is None:
        return "the agent's certificate"
    return f"the agent's certificate {ctx.certificate} (thumbprint {ctx.thumbprint})"


def _trust_us(ctx: Context) -> str:
    return (
        f"the server does not trust {_ours(ctx)}: its administrator must add it to the server's "
        "trusted client certificates (e.g. node-opcua: PKI/trusted/certs; KEPServerEX: "
        "OPC UA Configuration Manager, Trusted Clients; or accept it in the server's "
        "rejected-certificates list)"
    )


def _user(ctx: Context) -> str:
    return f"user {ctx.username!r}" if ctx.username else "an anonymous session"


def _login_fix(ctx: Context) -> str:
    if ctx.username is None:
        return "the server may not allow anonymous sessions: set username and password_file"
    return "check username and the password in password_file"


def explain_status(name: str, ctx: Context) -> Refusal | None:
    """The refusal a status code stands for; None for codes that are no refusal (timeouts...)."""
    if name == "BadCertificateUriInvalid":
        return Refusal(
            "uri_invalid",
            f"BadCertificateUriInvalid: the server refused the application URI the agent "
            f"announces ({ctx.application_uri}): it must be the URI in the subjectAltName of "
            f"{_ours(ctx)}; leave security.application_uri unset or make a certificate with "
            "`edge-agent opcua-cert --uri URI`",
        )
    if name == "BadCertificateUntrusted":
        return Refusal("client_untrusted", f"BadCertificateUntrusted: {_trust_us(ctx)}")
    if name == "BadSecurityChecksFailed":
        return Refusal(
            "security_checks_failed",
            "BadSecurityChecksFailed: the server rejected the secure channel; most often "
            f"{_trust_us(ctx)}; else check the gateway's clock and that the certificate was "
            "made by `edge-agent opcua-cert`",
        )
    if name in ("BadIdentityTokenRejected", "BadIdentityTokenInvalid"):
        return Refusal(
            "identity_rejected",
            f"{name}: the server rejected the login of {_user(ctx)}: {_login_fix(ctx)}",
        )
    if name == "BadUserAccessDenied":
        return Refusal(
            "access_denied",
            f"BadUserAccessDenied: the server denied {_user(ctx)}: {_login_fix(ctx)}, and that "
            "this user may open sessions on the server",
        )
    if name in ("BadCertificateTimeInvalid", "BadCertificateIssuerTimeInvalid"):
        return Refusal(
            "certificate_time_invalid",
            f"{name}: the server finds {_ours(ctx)} expired or not yet valid: check the clocks "
            "of the gateway and the server; make a new certificate with `edge-agent opcua-cert`",
        )
    if name in ("BadCertificateUseNotAllowed", "BadCertificateIssuerUseNotAllowed"):
        return Refusal(
            "certificate_use_not_allowed",
            f"{name}: the key usage of {_ours(ctx)} does not allow a client: make one with "
            "`edge-agent opcua-cert`",
        )
    if name in (
        "BadCertificateRevoked",
        "BadCertificateIssuerRevoked",
        "BadCertificateRevocationUnknown",
        "BadCertificateIssuerRevocationUnknown",
    ):
        return Refusal(
            "certificate_revoked",
            f"{name}: the server finds {_ours(ctx)} revoked, or cannot check its revocation "
            "list: ask the server's administrator",
        )
    if name in ("BadCertificateInvalid", "BadCertificateChainIncomplete"):
        return Refusal(
            "certificate_invalid",
            f"{name}: the server cannot use {_ours(ctx)}: make one with `edge-agent opcua-cert`",
        )
    if name == "BadCertificateHostNameInvalid":
        return Refusal(
            "certificate_hostname_invalid",
            f"{name}: the host names in {_ours(ctx)} do not match: make one with "
            "`edge-agent opcua-cert --dns NAME --ip ADDRESS` for this gateway",
        )
    if name in ("BadSecurityPolicyRejected", "BadSecurityModeRejected"):
        return Refusal(
            "security_policy_rejected",
            f"{name}: the server does not accept the configured security.policy / "
            f"security.mode on {ctx.endpoint}: use one its endpoints offer",
        )
    return None


def classify(exc: BaseException, phase: str, ctx: Context) -> Refusal | None:
    """The refusal behind an exception raised in `phase` of the connect sequence (`socket`,
    `hello`, `secure_channel`, `create_session`, `activate_session`); None when it is no
    refusal (server unreachable, timeout...)."""
    if isinstance(exc, UaStatusCodeError):
        name = type(exc).__name__
        if name == "UaStatusCodeError":  # a code asyncua has no class for
            from asyncua import ua

            name = ua.StatusCode(exc.code).name
        return explain_status(name, ctx)
    if ctx.secure and phase == "secure_channel" and not isinstance(exc, TimeoutError):
        return Refusal(
            "client_untrusted",
            f"the server closed the connection while opening the secure channel "
            f"({type(exc).__name__}): most likely {_trust_us(ctx)}",
        )
    return None
