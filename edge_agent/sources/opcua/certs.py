"""OPC UA application certificates: make the agent's own, read the application URI out of one,
thumbprints as servers show them, and the checks `validate` runs on the configured files.

Pure `cryptography`, no asyncua: `edge-agent opcua-cert` and `validate` stay quick.

What strict servers (node-opcua, KEPServerEX, UA .NET based PLC servers) want of a client's
application instance certificate (OPC 10000-6, 6.2.2): an X.509 v3 certificate whose
subjectAltName holds the applicationUri the client announces in CreateSession (else
BadCertificateUriInvalid) and the host's DNS names / IP addresses; keyUsage digitalSignature,
nonRepudiation, keyEncipherment, dataEncipherment (and keyCertSign when self-signed);
extendedKeyUsage clientAuth; basicConstraints CA false; a validity period; an RSA key of 2048 bits
or more for Basic256Sha256.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from edge_agent.private_files import write_private_bytes

KEY_FILE = "client_key.pem"
CERT_FILE = "client.der"
KEY_BITS = 2048


class CertificateError(Exception):
    """A certificate or key file that cannot be used; the message says which and why."""


def default_application_uri(hostname: str | None = None) -> str:
    """The URI `opcua-cert` puts in a certificate when none is given (unique per gateway)."""
    return f"urn:{hostname or socket.gethostname()}:edge-agent"


def parse_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in DER or PEM bytes (a PEM file may hold a chain)."""
    if b"-----BEGIN" in data:
        return x509.load_pem_x509_certificates(data)
    return [x509.load_der_x509_certificate(data)]


def first_certificate(der: bytes) -> x509.Certificate:
    """The first certificate of a DER chain (servers may send theirs followed by its issuers')."""
    if len(der) < 2 or der[0] != 0x30:
        raise ValueError("not a DER certificate")
    n = der[1]
    if n < 0x80:
        end = 2 + n
    else:
        width = n & 0x7F
        end = 2 + width + int.from_bytes(der[2 : 2 + width], "big")
    return x509.load_der_x509_certificate(der[:end])


def load_certificate(path: Path) -> x509.Certificate:
    """The (first) certificate in a DER or PEM file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        return parse_certificates(data)[0]
    except (ValueError, IndexError):
        raise CertificateError(f"{path} is not a DER or PEM certificate") from None


def load_private_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password=None)
        else:
            key = serialization.load_der_private_key(data, password=None)
    except TypeError:
        raise CertificateError(
            f"{path} is an encrypted private key; the agent needs it unencrypted (mode 0600)"
        ) from None
    except ValueError:
        raise CertificateError(f"{path} is not a DER or PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CertificateError(f"{path} is not an RSA key (Basic256Sha256 needs RSA)")
    return key


def thumbprint(cert: x509.Certificate) -> str:
    """SHA-1 of the DER encoding in hex: the thumbprint OPC UA servers list certificates by."""
    return cert.fingerprint(hashes.SHA1()).hex()  # an identifier, not a security check


def application_uri(cert: x509.Certificate) -> str | None:
    """The first URI in the certificate's subjectAltName: the application URI it is issued to."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    return uris[0] if uris else None


def common_name(cert: x509.Certificate) -> str | None:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else None
    return value if isinstance(value, str) else None


def describe(cert: x509.Certificate) -> str:
    """One line naming a certificate for logs and messages."""
    return (
        f"{common_name(cert) or cert.subject.rfc4514_string()!r} "
        f"(thumbprint {thumbprint(cert)}, URI {application_uri(cert) or 'none'})"
    )


# -- making the agent's certificate --------------------------------------------------------------


@dataclass(frozen=True)
class ClientCertificate:
    key: rsa.RSAPrivateKey
    cert: x509.Certificate


def make_client_certificate(
    uri: str,
    dns: list[str],
    ips: list[str],
    days: int,
    name: str = "edge-agent",
    organization: str = "edge-agent",
    now: dt.datetime | None = None,
) -> ClientCertificate:
    """A self-signed application instance certificate for a client, as OPC 10000-6 asks."""
    if days < 1:
        raise ValueError("days must be at least 1")
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
        ]
    )
    alt: list[x509.GeneralName] = [x509.UniformResourceIdentifier(uri)]
    alt += [x509.DNSName(d) for d in dns]
    alt += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    start = (now or dt.datetime.now(dt.UTC)) - dt.timedelta(minutes=5)  # clocks a bit apart
    public = key.public_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,  # nonRepudiation
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=True,  # OPC 10000-6: self-signed certificates include keyCertSign
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return ClientCertificate(key, cert)


def write_client_files(
    out: Path, made: ClientCertificate, force: bool = False
) -> tuple[Path, Path]:
    """Write `client_key.pem` (mode 0600, created so) and `client.der` into `out`. An existing
    key is never replaced without `force`: servers trust the certificate that goes with it."""
    out.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = out / KEY_FILE, out / CERT_FILE
    if not force:
        for p in (key_path, cert_path):
            if p.exists():
                raise CertificateError(
                    f"{p} exists (servers may trust it already); pass --force to replace it"
                )
    pem = made.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private_bytes(key_path, pem)
    cert_path.write_bytes(made.cert.public_bytes(serialization.Encoding.DER))
    return key_path, cert_path


# -- what `validate` checks ----------------------------------------------------------------------


@dataclass(frozen=True)
class ClientIdentity:
    """What the agent announces in CreateSession."""

    application_uri: str
    application_name: str


def client_identity(
    certificate: Path | None,
    private_key: Path | None,
    configured_uri: str | None,
    configured_name: str | None,
) -> ClientIdentity:
    """The application URI and name the agent announces, checked against the certificate and
    its key. Raises `FieldError` naming the `security` field at fault."""
    if certificate is None:
        return ClientIdentity(
            configured_uri or default_application_uri(), configured_name or "edge-agent"
        )
    try:
        cert = load_certificate(certificate)
    except CertificateError as exc:
        raise FieldError("certificate", str(exc)) from None
    if private_key is not None:
        try:
            key = load_private_key(private_key)
        except CertificateError as exc:
            raise FieldError("private_key", str(exc)) from None
        if key.public_key().public_numbers() != _rsa_public_numbers(cert):
            raise FieldError(
                "private_key", f"{private_key} is not the key of certificate {certificate}"
            )
    in_cert = application_uri(cert)
    if in_cert is None:
        raise FieldError(
            "certificate",
            f"{certificate} has no URI in its subjectAltName, so strict servers refuse it "
            "(BadCertificateUriInvalid); make one with `edge-agent opcua-cert`",
        )
    if configured_uri is not None and configured_uri != in_cert:
        raise FieldError(
            "application_uri",
            f"{configured_uri!r} is not the URI in certificate {certificate} ({in_cert!r}); "
            "servers refuse the session (BadCertificateUriInvalid): remove application_uri "
            f"or make a certificate for it (`edge-agent opcua-cert --uri {configured_uri}`)",
        )
    return ClientIdentity(in_cert, configured_name or common_name(cert) or "edge-agent")


def _rsa_public_numbers(cert: x509.Certificate) -> object:
    public = cert.public_key()
    return public.public_numbers() if isinstance(public, rsa.RSAPublicKey) else None


class FieldError(CertificateError):
    """A certificate problem that belongs to one field of the `security` section."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message
