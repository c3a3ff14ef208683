"""CA and serving certificate generation, and the renewal decision."""

from __future__ import annotations

import datetime

from cryptography import x509

from berth import certificates

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.timezone.utc)
DAY = datetime.timedelta(days=1)
NAMES = ["demo.ns.svc", "localhost", "127.0.0.1"]


def test_ca_is_valid_and_a_ca() -> None:
    ca = certificates.make_ca("test CA", NOW)
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    assert certificates.is_valid_ca(ca, NOW)
    assert not certificates.is_valid_ca(ca, NOW + certificates.CA_VALIDITY + DAY)


def test_ca_with_foreign_key_is_invalid() -> None:
    one, other = certificates.make_ca("one", NOW), certificates.make_ca("other", NOW)
    assert not certificates.is_valid_ca(certificates.KeyPair(one.cert_pem, other.key_pem), NOW)
    assert not certificates.is_valid_ca(certificates.KeyPair(b"", b""), NOW)


def test_serving_covers_names_and_verifies() -> None:
    ca = certificates.make_ca("test CA", NOW)
    serving = certificates.make_serving(ca, NAMES, NOW, 90 * DAY)
    cert = x509.load_pem_x509_certificate(serving.cert_pem)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_pem))
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["demo.ns.svc", "localhost"]
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert certificates.not_after(serving.cert_pem) == NOW + 90 * DAY


def test_renewal_not_needed_when_fresh() -> None:
    ca = certificates.make_ca("test CA", NOW)
    serving = certificates.make_serving(ca, NAMES, NOW, 90 * DAY)
    assert certificates.serving_needs_renewal(serving, ca, NAMES, NOW + 59 * DAY, 30 * DAY) is None


def test_renewal_inside_window() -> None:
    ca = certificates.make_ca("test CA", NOW)
    serving = certificates.make_serving(ca, NAMES, NOW, 90 * DAY)
    why = certificates.serving_needs_renewal(serving, ca, NAMES, NOW + 61 * DAY, 30 * DAY)
    assert why is not None and "renewal window" in why


def test_renewal_for_missing_name() -> None:
    ca = certificates.make_ca("test CA", NOW)
    serving = certificates.make_serving(ca, NAMES, NOW, 90 * DAY)
    why = certificates.serving_needs_renewal(serving, ca, [*NAMES, "registry.example.com"], NOW, 30 * DAY)
    assert why == "the certificate does not cover registry.example.com"


def test_renewal_for_other_ca() -> None:
    ca, other = certificates.make_ca("test CA", NOW), certificates.make_ca("test CA", NOW)
    serving = certificates.make_serving(other, NAMES, NOW, 90 * DAY)
    assert certificates.serving_needs_renewal(serving, ca, NAMES, NOW, 30 * DAY) is not None


def test_renewal_for_garbage() -> None:
    ca = certificates.make_ca("test CA", NOW)
    why = certificates.serving_needs_renewal(certificates.KeyPair(b"junk", b"junk"), ca, NAMES, NOW, 30 * DAY)
    assert why == "the stored certificate or key cannot be parsed"


def test_serving_never_outlives_ca() -> None:
    ca = certificates.make_ca("test CA", NOW)
    late = NOW + certificates.CA_VALIDITY - DAY
    serving = certificates.make_serving(ca, NAMES, late, 90 * DAY)
    assert certificates.not_after(serving.cert_pem) == certificates.not_after(ca.cert_pem)


def test_keypair_repr_hides_key() -> None:
    assert "PRIVATE" not in repr(certificates.make_ca("test CA", NOW))


def test_long_names_fit_common_name() -> None:
    long_name = "r" * 52 + "." + "n" * 63 + ".svc"
    ca = certificates.make_ca(f"berth {'n' * 63}/{'r' * 52} CA", NOW)
    serving = certificates.make_serving(ca, [long_name], NOW, 90 * DAY)
    sans = x509.load_pem_x509_certificate(serving.cert_pem).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [long_name]


def test_check_key_pair_matching() -> None:
    ca = certificates.make_ca("test CA", NOW)
    serving = certificates.make_serving(ca, NAMES, NOW, 90 * DAY)
    assert certificates.check_key_pair(serving) is None


def test_check_key_pair_problems() -> None:
    ca = certificates.make_ca("test CA", NOW)
    serving = certificates.make_serving(ca, NAMES, NOW, 90 * DAY)
    assert certificates.check_key_pair(certificates.KeyPair(b"junk", serving.key_pem)) == "tls.crt is not a PEM certificate"
    assert certificates.check_key_pair(certificates.KeyPair(serving.cert_pem, b"GARBAGEKEYVALUE")) == "tls.key is not an unencrypted PEM private key"
    assert certificates.check_key_pair(certificates.KeyPair(serving.cert_pem, ca.key_pem)) == "tls.key does not belong to the certificate in tls.crt"
