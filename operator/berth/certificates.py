"""Certificates for SelfSigned TLS: a per-Registry CA and the serving certificate it signs.

Pure functions over PEM bytes and a clock. The CA is made once and kept
across serving-certificate renewals, so clients that trust it never need to
update. Keys are ECDSA P-256.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_VALIDITY = datetime.timedelta(days=3650)
# X.509 limits a commonName to 64 characters (RFC 5280 ub-common-name); the SANs carry the full names.
MAX_COMMON_NAME = 64
# Backdate notBefore so a node with a slightly slow clock accepts a new certificate.
CLOCK_SKEW = datetime.timedelta(minutes=5)


@dataclasses.dataclass(frozen=True)
class KeyPair:
    """A PEM certificate and its PEM private key."""

    cert_pem: bytes
    key_pem: bytes

    def __repr__(self) -> str:
        return "KeyPair(cert_pem=..., key_pem=<hidden>)"


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def make_ca(common_name: str, now: datetime.datetime) -> KeyPair:
    """Create a self-signed CA certificate."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "berth"), x509.NameAttribute(NameOID.COMMON_NAME, common_name[:MAX_COMMON_NAME])])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def make_serving(ca: KeyPair, names: Sequence[str], now: datetime.datetime, validity: datetime.timedelta) -> KeyPair:
    """Issue a serving certificate for DNS names and IP addresses, signed by the CA."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an ECDSA key")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0][:MAX_COMMON_NAME])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _general_names(names: Sequence[str]) -> list[x509.GeneralName]:
    result: list[x509.GeneralName] = []
    for name in names:
        try:
            result.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            result.append(x509.DNSName(name))
    return result


def not_after(cert_pem: bytes) -> datetime.datetime:
    """Return the expiry of a PEM certificate, in UTC."""
    return x509.load_pem_x509_certificate(cert_pem).not_valid_after_utc


def _public_der(public_key: object) -> bytes:
    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)  # type: ignore[attr-defined, no-any-return]


def check_key_pair(pair: KeyPair) -> str | None:
    """Return why a PEM certificate and key cannot serve TLS together, or None when they can."""
    try:
        cert = x509.load_pem_x509_certificate(pair.cert_pem)
    except ValueError:
        return "tls.crt is not a PEM certificate"
    try:
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
    except (ValueError, TypeError):
        return "tls.key is not an unencrypted PEM private key"
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        return "tls.key does not belong to the certificate in tls.crt"
    return None


def is_valid_ca(pair: KeyPair, now: datetime.datetime) -> bool:
    """Check that a stored CA parses, has a matching key, and is not expired."""
    try:
        cert = x509.load_pem_x509_certificate(pair.cert_pem)
        key = serialization.load_pem_private_key(pair.key_pem, password=None)
    except ValueError:
        return False
    if _public_der(cert.public_key()) != _public_der(key.public_key()):
        return False
    return cert.not_valid_after_utc > now


def serving_needs_renewal(
    serving: KeyPair, ca: KeyPair, names: Sequence[str], now: datetime.datetime, renew_before: datetime.timedelta
) -> str | None:
    """Return why the serving certificate must be reissued, or None when it is still good.

    Reasons: unreadable, signed by another CA, missing a name, or within
    `renew_before` of expiry.
    """
    try:
        cert = x509.load_pem_x509_certificate(serving.cert_pem)
        serialization.load_pem_private_key(serving.key_pem, password=None)
        ca_cert = x509.load_pem_x509_certificate(ca.cert_pem)
    except ValueError:
        return "the stored certificate or key cannot be parsed"
    if cert.issuer != ca_cert.subject:
        return "the certificate was not issued by the current CA"
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return "the certificate signature does not verify against the current CA"
    try:
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return "the certificate has no subjectAltName"
    present = {str(value) for value in sans.get_values_for_type(x509.DNSName)}
    present |= {str(value) for value in sans.get_values_for_type(x509.IPAddress)}
    missing = [name for name in names if name not in present]
    if missing:
        return f"the certificate does not cover {', '.join(missing)}"
    if cert.not_valid_after_utc - now <= renew_before:
        return f"the certificate expires at {cert.not_valid_after_utc.isoformat()}, within the renewal window"
    return None
