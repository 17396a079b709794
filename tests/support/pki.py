"""A throwaway certificate authority for TLS tests: CA, server and client certificates as PEM files.

Keys are ECDSA P-256 (fast to generate); certificates are valid from an hour ago for one day. Private keys are
written with mode 0600, as Mosquitto and the edge agent expect of real ones.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertFiles:
    """A certificate and its private key on disk."""

    cert: Path
    key: Path


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def _write_cert(cert: x509.Certificate, path: Path) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Varta tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class TestCA:
    """A CA that writes its certificate to ``<directory>/<slug>-ca.crt`` and issues leaf certificates."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "Varta Test CA") -> None:
        self.directory = directory
        self.name = name
        self.slug = "".join(ch if ch.isalnum() else "-" for ch in name.lower())
        directory.mkdir(parents=True, exist_ok=True)
        self._key = _new_key()
        now = dt.datetime.now(dt.UTC)
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        self.cert_file = directory / f"{self.slug}-ca.crt"
        _write_cert(self.certificate, self.cert_file)

    def _issue(
        self,
        common_name: str,
        file_stem: str,
        usage: x509.ObjectIdentifier,
        hosts: Sequence[str] = (),
    ) -> CertFiles:
        key = _new_key()
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False)
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        files = CertFiles(
            cert=self.directory / f"{self.slug}-{file_stem}.crt",
            key=self.directory / f"{self.slug}-{file_stem}.key",
        )
        _write_cert(cert, files.cert)
        _write_key(key, files.key)
        return files

    def issue_server(self, hosts: Sequence[str] = ("127.0.0.1", "localhost")) -> CertFiles:
        """A server certificate whose CN is the first host and whose SAN lists every host (IP or DNS)."""
        return self._issue(hosts[0], "server", ExtendedKeyUsageOID.SERVER_AUTH, hosts)

    def issue_client(self, common_name: str) -> CertFiles:
        """A client certificate with *common_name* as CN (Mosquitto's username with use_identity_as_username)."""
        return self._issue(common_name, f"client-{common_name}", ExtendedKeyUsageOID.CLIENT_AUTH)
