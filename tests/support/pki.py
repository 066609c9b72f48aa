"""A throwaway PKI for the TLS tests, made with the ``cryptography`` package.

:func:`make_pki` writes, under one folder: a CA, the broker's certificate for ``localhost`` /
``127.0.0.1`` signed by it, a client certificate signed by it, and a second, unrelated CA with its
own client certificate (the "wrong CA" cases). Private keys are written owner-only (0600); the
broker's files are then handed to the ``rabbitmq`` user, who must read them.
"""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import pwd
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclasses.dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path
    other_client_cert: Path
    other_client_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _leaf(common_name: str, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, *,
          usages: list[x509.ObjectIdentifier], alt_names: list[x509.GeneralName]
          ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def make_pki(folder: Path) -> Pki:
    """Write the CA, broker, client and wrong-CA files into ``folder`` and return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    ca, ca_key = _ca("burrow test CA")
    other_ca, other_key = _ca("some other CA")
    local = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server, server_key = _leaf("localhost", ca, ca_key, usages=[ExtendedKeyUsageOID.SERVER_AUTH], alt_names=local)
    client, client_key = _leaf("burrow-client", ca, ca_key, usages=[ExtendedKeyUsageOID.CLIENT_AUTH], alt_names=[])
    stranger, stranger_key = _leaf("burrow-client", other_ca, other_key, usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
                                   alt_names=[])
    pki = Pki(*(folder / name for name in ("ca.pem", "server.pem", "server.key", "client.pem", "client.key",
                                            "other-ca.pem", "other-client.pem", "other-client.key")))
    _write_cert(pki.ca, ca)
    _write_cert(pki.server_cert, server)
    _write_key(pki.server_key, server_key)
    _write_cert(pki.client_cert, client)
    _write_key(pki.client_key, client_key)
    _write_cert(pki.other_ca, other_ca)
    _write_cert(pki.other_client_cert, stranger)
    _write_key(pki.other_client_key, stranger_key)
    if os.geteuid() == 0:
        rabbitmq = pwd.getpwnam("rabbitmq")
        for path in (pki.ca, pki.server_cert, pki.server_key):
            os.chown(path, rabbitmq.pw_uid, rabbitmq.pw_gid)
    return pki


def make_node_pki(folder: Path, hosts: list[str], strangers: list[str]) -> dict[str, tuple[Path, Path]]:
    """Write ``ca.pem`` (the cluster's CA), ``other-ca.pem`` (an unrelated one) and, per host, its
    ``<host>.pem`` / ``<host>.key``: signed by the cluster's CA for ``hosts``, by the other CA for
    ``strangers``. Returns {host: (certificate, key)}. The files are for Ansible to copy: no chown."""
    folder.mkdir(parents=True, exist_ok=True)
    authorities = {"ca.pem": _ca("burrow test CA"), "other-ca.pem": _ca("some other CA")}
    for filename, (cert, _) in authorities.items():
        _write_cert(folder / filename, cert)
    files = {}
    for host in [*hosts, *strangers]:
        ca, ca_key = authorities["other-ca.pem" if host in strangers else "ca.pem"]
        # Each node is a TLS server to some peers and a client of others, and the dialling side
        # checks the host of the node name (rabbit@<host>) against the DNS names.
        cert, key = _leaf(host, ca, ca_key, usages=[ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
                          alt_names=[x509.DNSName(host)])
        files[host] = (folder / f"{host}.pem", folder / f"{host}.key")
        _write_cert(files[host][0], cert)
        _write_key(files[host][1], key)
    return files
