"""TLS to MariaDB (`DATABASE_URL=...?ssl=true&ssl_ca=...`) and to Redis (`rediss://`), against
private servers holding a certificate this test makes (issue 12.9)."""

import datetime
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from pymysql import _auth  # type: ignore[import-untyped]

from chat.redis_client import create_redis
from chat.settings import Settings, SettingsError, parse_database_url
from chat.settings_parse import TlsConfig
from chat.store import DatabaseError, connect
from tests.faults.servers import MariaDB, RedisServer

SECRET = "tls-secret-0123456789abcdef01234567"


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return path


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Name | None,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer or name).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
            decipher_only=False), critical=True)
    else:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class Pki:
    ca: Path  # the CA that signed the servers' certificate
    other_ca: Path  # a CA that signed nothing here
    cert: Path  # the servers' certificate (its key next to it, .key)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, other_key, server_key = _key(), _key(), _key()
    ca = _certificate("chat-api test CA", ca_key, None, ca_key, ca=True)
    other = _certificate("some other CA", other_key, None, other_key, ca=True)
    server = _certificate("127.0.0.1", server_key, ca.subject, ca_key, ca=False)
    return Pki(_write(folder / "ca.pem", ca), _write(folder / "other-ca.pem", other),
               _write(folder / "server.pem", server, server_key))


@pytest.fixture(scope="module")
def tls_mariadb(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[MariaDB]:
    server = MariaDB(tmp_path_factory.mktemp("mariadb-tls"))
    server.process.argv += [f"--ssl-ca={pki.ca}", f"--ssl-cert={pki.cert}", f"--ssl-key={pki.cert.with_suffix('.key')}"]
    server.start()
    server.create_database("tls")
    yield server
    server.stop()


async def cipher_of(url: str) -> str:
    db = await connect(parse_database_url(url), pool_size=1)
    try:
        row = await db.fetchone("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert row is not None
        return str(row[1])
    finally:
        await db.close()


async def test_the_store_talks_tls_to_mariadb(tls_mariadb, pki):
    base = f"mysql://root@127.0.0.1:{tls_mariadb.port}/tls"
    assert await cipher_of(f"{base}?ssl=true&ssl_ca={pki.ca}")  # encrypted, certificate and host name checked
    assert await cipher_of(f"{base}?ssl_ca={pki.ca}&ssl_verify=ca")
    assert await cipher_of(f"{base}?ssl=1&ssl_verify=false")  # encryption only
    assert await cipher_of(base) == ""  # plain TCP unless asked


async def test_a_certificate_from_another_ca_is_refused(tls_mariadb, pki):
    with pytest.raises(DatabaseError, match=r"cannot connect to mysql://root@127.0.0.1:\d+/tls\?ssl=true: .*certif"):
        await cipher_of(f"mysql://root@127.0.0.1:{tls_mariadb.port}/tls?ssl=true&ssl_ca={pki.other_ca}")


async def test_an_unreadable_ca_file_is_a_clear_error(tls_mariadb, tmp_path):
    with pytest.raises(DatabaseError, match="cannot use the TLS files of DATABASE_URL"):
        await cipher_of(f"mysql://root@127.0.0.1:{tls_mariadb.port}/tls?ssl_ca={tmp_path / 'missing.pem'}")


async def test_tls_asked_of_a_server_without_it_is_refused(mysql_database_url):
    """The shared test MariaDB has no certificate: aiomysql would quietly stay on plain TCP."""
    with pytest.raises(DatabaseError, match="does not offer TLS"):
        await cipher_of(f"{mysql_database_url}?ssl=true&ssl_verify=none")


def test_database_url_tls_options():
    config = parse_database_url("mysql://u:pw@db:3306/chat?ssl_ca=/etc/ca.pem&ssl_cert=/c.pem&ssl_key=/k.pem"
                                "&charset=utf8mb4")
    assert config.tls == TlsConfig(ca="/etc/ca.pem", cert="/c.pem", key="/k.pem", verify="full")
    assert config.describe() == "mysql://u@db:3306/chat?ssl=true"  # never the files, never the password
    assert "ca.pem" not in repr(config) and "pw" not in repr(config)
    assert parse_database_url("mysql://u@db/chat?ssl=false").tls is None
    assert parse_database_url("mysql://u@db/chat?ssl=on&ssl_verify=CA").tls == TlsConfig(verify="ca")
    for bad, problem in [("ssl=maybe", "ssl must be true or false"), ("ssl_mode=REQUIRED", "unknown TLS option"),
                         ("ssl=false&ssl_ca=/x", "ssl=false contradicts ssl_ca"),
                         ("ssl_key=/k", "ssl_key needs ssl_cert"), ("ssl_verify=some", "ssl_verify must be")]:
        with pytest.raises(SettingsError, match=f"^DATABASE_URL: {problem}"):
            parse_database_url(f"mysql://u@db/chat?{bad}")


async def test_rediss_url_talks_tls_to_redis(tmp_path, pki):
    server = RedisServer(tmp_path / "redis")
    port = server.port
    server.process.argv[server.process.argv.index("--port") + 1] = "0"  # TLS only
    server.process.argv += ["--tls-port", str(port), "--tls-cert-file", str(pki.cert),
                            "--tls-key-file", str(pki.cert.with_suffix(".key")), "--tls-ca-cert-file", str(pki.ca),
                            "--tls-auth-clients", "no"]
    server.start()
    try:
        settings = Settings.from_env({"REDIS_URL": f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={pki.ca}",
                                      "JWT_SECRET_KEY": SECRET, "CHAT_DATA_DIR": str(tmp_path)})
        assert settings.redis is not None and settings.redis.describe() == f"rediss://127.0.0.1:{port}/0"
        client = create_redis(settings)
        try:
            assert await client.ping()
        finally:
            await client.aclose()
    finally:
        server.crash()


def test_mysql8_default_authentication_works_over_plain_tcp():
    """MySQL 8's caching_sha2_password sends the password RSA-encrypted over plain TCP, which pymysql
    does with the `cryptography` package (a dependency: without it, RuntimeError on the first connect)."""
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = server_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    assert len(_auth.sha2_rsa_encrypt(b"p@ss:word", b"0123456789abcdefghij", public_pem)) == 256
    declared = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    assert '"cryptography>=' in declared
