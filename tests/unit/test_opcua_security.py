"""OPC UA security without a server: the certificate `opcua-cert` makes, URIs and thumbprints,
the config checks `validate` runs, trust decisions, and the words for refused sessions."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from asyncua import ua
from asyncua.ua import uaerrors
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_agent.cli import main as cli_main
from edge_agent.config import ConfigError, load_config
from edge_agent.sources.opcua.certs import (
    CertificateError,
    FieldError,
    application_uri,
    client_identity,
    first_certificate,
    load_certificate,
    make_client_certificate,
    thumbprint,
    write_client_files,
)
from edge_agent.sources.opcua.config import OpcUaSecurityConfig
from edge_agent.sources.opcua.refusals import Context, classify, explain_status
from edge_agent.sources.opcua.trust import ServerTrust

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "examples" / "pump-skid.yaml"
URI = "urn:gw-07:edge-agent"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """client_key.pem and client.der made by the command, once for the module."""
    d = tmp_path_factory.mktemp("cert")
    args = ["opcua-cert", "--out", str(d), "--uri", URI, "--dns", "gw-07", "--dns", "gw-07.plant",
            "--ip", "10.0.0.7", "--days", "30", "--name", "edge-agent@gw-07"]  # fmt: skip
    assert cli_main(args) == 0
    return d


# -- the certificate ---------------------------------------------------------------------------


def test_certificate_has_what_strict_servers_check(made: Path) -> None:
    cert = load_certificate(made / "client.der")
    ext = cert.extensions
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [URI]
    assert san.get_values_for_type(x509.DNSName) == ["gw-07", "gw-07.plant"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.7"]
    ku = ext.get_extension_for_class(x509.KeyUsage)
    assert ku.critical
    assert ku.value.digital_signature and ku.value.content_commitment
    assert ku.value.key_encipherment and ku.value.data_encipherment
    assert ku.value.key_cert_sign  # self-signed (OPC 10000-6)
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    bc = ext.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca is False
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert days == 30
    assert cert.not_valid_before_utc <= dt.datetime.now(dt.UTC) < cert.not_valid_after_utc
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "edge-agent@gw-07"
    assert cert.issuer == cert.subject
    public = cert.public_key()
    assert isinstance(public, rsa.RSAPublicKey) and public.key_size == 2048
    assert cert.signature_hash_algorithm is not None
    public.verify(  # self-signed with its own key
        cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256()
    )


def test_key_file_is_private_and_not_replaced_without_force(
    made: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = made / "client_key.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    assert cli_main(["opcua-cert", "--out", str(made), "--uri", URI]) == 2
    assert "--force" in capsys.readouterr().err
    assert key.read_bytes() == before
    with pytest.raises(CertificateError, match="exists"):
        write_client_files(made, make_client_certificate(URI, [], [], 1))


def test_force_replaces_and_the_printed_thumbprint_is_the_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["opcua-cert", "--out", str(tmp_path), "--uri", URI]) == 0
    first = (tmp_path / "client.der").read_bytes()
    capsys.readouterr()
    assert cli_main(["opcua-cert", "--out", str(tmp_path), "--uri", URI, "--force"]) == 0
    out = capsys.readouterr().out
    der = (tmp_path / "client.der").read_bytes()
    assert der != first
    sha1 = hashlib.sha1(der).hexdigest()  # what servers show
    assert f"SHA-1 thumbprint  {sha1}" in out
    assert thumbprint(load_certificate(tmp_path / "client.der")) == sha1
    assert "trusted" in out and "PKI/trusted/certs" in out and URI in out
    assert stat.S_IMODE((tmp_path / "client_key.pem").stat().st_mode) == 0o600


def test_bad_ip_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["opcua-cert", "--out", str(tmp_path), "--ip", "10.0.0.300"]) == 2
    assert "10.0.0.300" in capsys.readouterr().err
    assert not (tmp_path / "client_key.pem").exists()


def test_uri_pem_der_and_chains(made: Path, tmp_path: Path) -> None:
    cert = load_certificate(made / "client.der")
    assert application_uri(cert) == URI
    pem = tmp_path / "c.pem"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    assert load_certificate(pem) == cert
    der = cert.public_bytes(serialization.Encoding.DER)
    other = make_client_certificate("urn:other", [], [], 1).cert
    assert first_certificate(der + other.public_bytes(serialization.Encoding.DER)) == cert
    (tmp_path / "junk.der").write_bytes(b"not a certificate")
    with pytest.raises(CertificateError, match="not a DER or PEM certificate"):
        load_certificate(tmp_path / "junk.der")
    with pytest.raises(CertificateError, match="cannot read"):
        load_certificate(tmp_path / "missing.der")


def _without_san(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "old")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    p = tmp_path / "nosan.der"
    p.write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return p


def test_client_identity_from_the_certificate_and_its_checks(made: Path, tmp_path: Path) -> None:
    cert, key = made / "client.der", made / "client_key.pem"
    ident = client_identity(cert, key, None, None)
    assert (ident.application_uri, ident.application_name) == (URI, "edge-agent@gw-07")
    assert client_identity(cert, key, URI, "Line 3 agent").application_name == "Line 3 agent"
    with pytest.raises(FieldError) as exc:
        client_identity(cert, key, "urn:somewhere:else", None)
    assert exc.value.field == "application_uri"
    assert "urn:somewhere:else" in exc.value.message and URI in exc.value.message
    other = tmp_path / "other"
    write_client_files(other, make_client_certificate(URI, [], [], 1))
    with pytest.raises(FieldError) as exc:
        client_identity(cert, other / "client_key.pem", None, None)
    assert exc.value.field == "private_key" and "is not the key of" in exc.value.message
    with pytest.raises(FieldError) as exc:
        client_identity(_without_san(tmp_path), None, None, None)
    assert exc.value.field == "certificate" and "opcua-cert" in exc.value.message
    encrypted = tmp_path / "enc.pem"
    pk = serialization.load_pem_private_key(key.read_bytes(), None)
    encrypted.write_bytes(
        pk.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pw"),
        )
    )
    with pytest.raises(FieldError, match="encrypted"):
        client_identity(cert, encrypted, None, None)
    # Security None without a certificate: never asyncua's default URI.
    assert client_identity(None, None, None, None).application_uri.endswith(":edge-agent")


# -- what validate says ------------------------------------------------------------------------


def write_config(tmp_path: Path, security: dict[str, Any]) -> Path:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["sources"].append(
        {"type": "opcua", "name": "ua", "endpoint": "opc.tcp://127.0.0.1:4840",
         "profile": "acme_pump_opcua", "security": security}
    )  # fmt: skip
    p = tmp_path / "agent.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    return exc.value.errors


def secure(made: Path, **extra: Any) -> dict[str, Any]:
    return {"policy": "Basic256Sha256", "mode": "SignAndEncrypt",
            "certificate": str(made / "client.der"),
            "private_key": str(made / "client_key.pem")} | extra  # fmt: skip


def test_a_secure_source_needs_exactly_one_way_to_trust_the_server(
    made: Path, tmp_path: Path
) -> None:
    errs = errors(write_config(tmp_path, secure(made)))
    assert any(
        e.startswith("sources[1].security: ") and "exactly one way to trust the server" in e
        for e in errs
    ), errs
    errs = errors(
        write_config(
            tmp_path,
            secure(made, trust_dir=str(tmp_path), accept_any_server_certificate=True),
        )
    )
    assert any("got trust_dir and accept_any_server_certificate" in e for e in errs), errs
    plain = {"policy": "None", "mode": "None", "server_certificate": "s.der"}
    errs = errors(write_config(tmp_path, plain))
    assert any(
        e.startswith("sources[1].security: ")
        and "server_certificate: only used with a secure policy" in e
        for e in errs
    ), errs
    # Each of the three alone is accepted.
    (tmp_path / "server.der").write_bytes((made / "client.der").read_bytes())
    for one in ({"server_certificate": "server.der"}, {"trust_dir": "."},
                {"accept_any_server_certificate": True}):  # fmt: skip
        load_config(write_config(tmp_path, secure(made, **one)))


def test_validate_names_both_uris_on_a_mismatch_and_exits_2(
    made: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(
        tmp_path,
        secure(made, application_uri="urn:plant:agent", accept_any_server_certificate=True),
    )
    with pytest.raises(SystemExit) as exc:
        cli_main(["validate", "--config", str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "application_uri" in x).strip()
    assert line.startswith("sources[1].security.application_uri: 'urn:plant:agent' ")
    assert URI in line and "BadCertificateUriInvalid" in line


def test_security_files_are_found_relative_to_the_config(made: Path, tmp_path: Path) -> None:
    (tmp_path / "pki").mkdir()
    for f in ("client.der", "client_key.pem"):
        (tmp_path / "pki" / f).write_bytes((made / f).read_bytes())
    sec = {"policy": "Basic256Sha256", "mode": "Sign", "certificate": "pki/client.der",
           "private_key": "pki/client_key.pem", "trust_dir": "pki"}  # fmt: skip
    load_config(write_config(tmp_path, sec))
    errs = errors(
        write_config(tmp_path, sec | {"trust_dir": "nowhere", "certificate": "pki/none.der"})
    )
    assert any(e.startswith("sources[1].security.certificate: cannot read") for e in errs), errs
    assert any(e.startswith("sources[1].security.trust_dir: ") for e in errs), errs
    errs = errors(write_config(tmp_path, sec | {"server_certificate": "x.der", "trust_dir": None}))
    assert any(e.startswith("sources[1].security.server_certificate: ") for e in errs), errs


# -- trusting the server -----------------------------------------------------------------------


def _ca_and_leaf() -> tuple[x509.Certificate, x509.Certificate]:
    now = dt.datetime.now(dt.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Plant CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(1)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plc")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=9))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("urn:plc")]),
                       False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    return ca, leaf


async def test_server_trust_pinned_folder_ca_and_insecure(made: Path, tmp_path: Path) -> None:
    server = make_client_certificate("urn:server", [], [], 5).cert
    pinned = tmp_path / "server.der"
    pinned.write_bytes(server.public_bytes(serialization.Encoding.DER))
    base = {"policy": "Basic256Sha256", "mode": "Sign", "certificate": "c", "private_key": "k"}
    pinned_cfg = OpcUaSecurityConfig.model_validate(base | {"server_certificate": "server.der"})
    trust = ServerTrust(pinned_cfg, tmp_path)
    assert await trust.refusal(server) is None
    stranger = load_certificate(made / "client.der")
    why = await trust.refusal(stranger)
    assert why is not None and thumbprint(stranger) in why and thumbprint(server) in why

    folder = tmp_path / "trusted"
    folder.mkdir()
    trust = ServerTrust(
        OpcUaSecurityConfig.model_validate(base | {"trust_dir": "trusted"}), tmp_path
    )
    why = await trust.refusal(server)
    assert why is not None and thumbprint(server) in why and str(folder) in why
    (folder / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    assert await trust.refusal(server) is None  # read again at every check
    ca, leaf = _ca_and_leaf()
    assert await trust.refusal(leaf) is not None
    (folder / "ca.der").write_bytes(ca.public_bytes(serialization.Encoding.DER))
    assert await trust.refusal(leaf) is None  # issued by a trusted CA

    insecure = base | {"accept_any_server_certificate": True}
    assert (
        await ServerTrust(OpcUaSecurityConfig.model_validate(insecure), tmp_path).refusal(leaf)
        is None
    )


# -- refused sessions in words -----------------------------------------------------------------

CTX = Context(
    endpoint="opc.tcp://plc:4840", application_uri=URI, secure=True,
    certificate="/etc/edge-agent/client.der", thumbprint="ab" * 20, username="operator",
)  # fmt: skip


@pytest.mark.parametrize(
    ("code", "kind", "words"),
    [
        ("BadCertificateUriInvalid", "uri_invalid", [URI, "subjectAltName", "opcua-cert"]),
        ("BadCertificateUntrusted", "client_untrusted", ["ab" * 20, "trusted"]),
        ("BadSecurityChecksFailed", "security_checks_failed", ["trusted", "clock"]),
        ("BadIdentityTokenRejected", "identity_rejected", ["'operator'", "password_file"]),
        ("BadIdentityTokenInvalid", "identity_rejected", ["'operator'", "password_file"]),
        ("BadUserAccessDenied", "access_denied", ["'operator'", "password_file"]),
        ("BadCertificateTimeInvalid", "certificate_time_invalid", ["clock"]),
        ("BadCertificateUseNotAllowed", "certificate_use_not_allowed", ["opcua-cert"]),
        ("BadCertificateRevoked", "certificate_revoked", ["revoked"]),
        ("BadCertificateInvalid", "certificate_invalid", ["opcua-cert"]),
        ("BadCertificateHostNameInvalid", "certificate_hostname_invalid", ["--dns"]),
        ("BadSecurityPolicyRejected", "security_policy_rejected", ["security.policy"]),
    ],
)
def test_each_status_code_says_what_to_do(code: str, kind: str, words: list[str]) -> None:
    refusal = explain_status(code, CTX)
    assert refusal is not None and refusal.kind == kind
    assert refusal.counter == f"refused_{kind}"
    assert refusal.message.startswith(f"{code}: ") and "\n" not in refusal.message
    for w in words:
        assert w in refusal.message


def test_classify_exceptions_by_phase() -> None:
    denied = classify(uaerrors.BadUserAccessDenied(), "activate_session", CTX)
    assert denied is not None and denied.kind == "access_denied"
    generic = uaerrors.UaStatusCodeError(ua.StatusCodes.BadCertificateUntrusted)
    untrusted = classify(generic, "secure_channel", CTX)
    assert untrusted is not None and untrusted.kind == "client_untrusted"
    # node-opcua closes the channel on an untrusted client certificate; asyncua fails to parse.
    closed = classify(AssertionError(), "secure_channel", CTX)
    assert closed is not None and closed.kind == "client_untrusted"
    assert "closed the connection" in closed.message and "ab" * 20 in closed.message
    assert classify(AssertionError(), "secure_channel", Context("e", URI, secure=False)) is None
    assert classify(ConnectionRefusedError(), "socket", CTX) is None
    assert classify(TimeoutError(), "secure_channel", CTX) is None
    assert classify(uaerrors.BadTimeout(), "create_session", CTX) is None
    anonymous = explain_status("BadIdentityTokenRejected", Context("e", URI, secure=False))
    assert anonymous is not None and "anonymous" in anonymous.message


async def test_agent_sends_the_offline_reason_once_per_reason(tmp_path: Path) -> None:
    from edge_agent.agent import Agent
    from tests.unit.test_upstream_config import config, validator

    agent = Agent(load_config(config(tmp_path, outbox__dir=str(tmp_path / "state"))), [])
    steps = [(False, None), (False, "R1"), (False, "R1"), (False, None), (True, None),
             (False, "R2"), (False, "R2")]  # fmt: skip
    for up, reason in steps:
        agent._watch_connection("ua", up, reason)
    events = [json.loads(s.message.payload) for s in agent.publisher.outbox.peek(100)]
    for e in events:
        validator("event").validate(e)
    assert [(e["type"], (e.get("details") or {}).get("reason")) for e in events] == [
        ("source_offline", None),
        ("source_offline", "R1"),
        ("source_online", None),
        ("source_offline", "R2"),
    ]
    assert events[1]["message"] == "source ua is not reachable: R1"
