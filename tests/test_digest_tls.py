"""Digest sending over STARTTLS and implicit TLS with AUTH, against aiosmtpd on 127.0.0.1 with a
certificate made for the test by a throw-away CA. The client verifies the certificate and the
host name: the CA is trusted only through ZHUANLAN_SMTP_CA_FILE; the password comes from the
environment variable named by smtp.password_env."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from feeds.mail import CA_FILE_ENV, MailTransportError, send_digest
from tests.test_digest_flaky import KJ, NN, seed
from tests.test_digest_send import SEND_TIME, WEEK, Handler, config_for, deliveries, free_port
from tests.test_feeds_factory import COLUMN

if TYPE_CHECKING:
    from sqlalchemy.orm import Session, sessionmaker

    from zhuanlan_config import Config

USER = "zhuanlan@jgdj.example.org"
PASSWORD = "s3cret-Pass_word"
PASSWORD_ENV = "ZHUANLAN_TEST_DIGEST_SMTP_PASSWORD"

# The implicit-TLS listener cannot tell aiosmtpd it is encrypted (see `server`), hence its warning.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    cert_file: Path
    key_file: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA and a server certificate for 127.0.0.1 / localhost signed by it (PEM files)."""
    out = tmp_path_factory.mktemp("pki")
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("zhuanlan test CA"))
        .issuer_name(_name("zhuanlan test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pki = Pki(out / "ca.pem", out / "server.pem", out / "server.key")
    pki.ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pki.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pki


class Authenticator:
    """Accepts USER / PASSWORD only and records every attempt (mechanism, login, success)."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, str, bool]] = []

    def __call__(self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        login, password = auth_data.login.decode(), auth_data.password.decode()
        ok = login == USER and password == PASSWORD
        self.attempts.append((mechanism, login, ok))
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


class TlsHandler(Handler):
    """Records, per message, whether the session was encrypted and who had logged in."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: list[tuple[bool, str | None]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        encrypted = server.transport.get_extra_info("ssl_object") is not None or session.ssl is not None
        login = session.login_data.decode() if session.authenticated and session.login_data else None
        self.sessions.append((encrypted, login))
        return await super().handle_DATA(server, session, envelope)


@dataclass
class Server:
    security: str  # smtp.security: starttls | ssl
    handler: TlsHandler
    auth: Authenticator
    port: int


def server_context(pki: Pki) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.cert_file, pki.key_file)
    return ctx


@pytest.fixture(params=["starttls", "ssl"])
def server(request: pytest.FixtureRequest, pki: Pki) -> Iterator[Server]:
    """STARTTLS (required before AUTH and MAIL) offering only PLAIN, or implicit TLS offering only LOGIN."""
    handler, auth, port = TlsHandler(), Authenticator(), free_port()
    common: dict[str, Any] = {"authenticator": auth, "auth_required": True}
    controller: Controller
    if request.param == "starttls":
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            tls_context=server_context(pki),
            require_starttls=True,
            auth_require_tls=True,
            auth_exclude_mechanism=["LOGIN"],
            **common,
        )
    else:
        controller = Controller(
            handler,
            hostname="127.0.0.1",
            port=port,
            ssl_context=server_context(pki),
            # aiosmtpd only knows about TLS it negotiated itself (STARTTLS): on an implicit-TLS
            # listener it would hide AUTH. The handler checks the transport really is TLS.
            auth_require_tls=False,
            auth_exclude_mechanism=["PLAIN"],
            **common,
        )
    controller.start()
    try:
        yield Server(str(request.param), handler, auth, port)
    finally:
        controller.stop()


def tls_config(tmp_path: Path, server: Server) -> Config:
    return config_for(
        tmp_path,
        server.port,
        smtp={"security": server.security, "user": USER, "password_env": PASSWORD_ENV, "max_attempts": 2},
    )


def test_sends_over_tls_after_login(
    sessions: sessionmaker[Session],
    now: datetime,
    tmp_path: Path,
    pki: Pki,
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed(sessions, now)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.setenv(CA_FILE_ENV, str(pki.ca_file))
    config = tls_config(tmp_path, server)
    result = send_digest(sessions, config, WEEK, SEND_TIME, sleep=lambda s: None)
    assert (result.sent, result.failed) == (2, 0)
    mechanism = "PLAIN" if server.security == "starttls" else "LOGIN"
    assert server.auth.attempts == [(mechanism, USER, True)]  # one connection, one login, reused
    assert server.handler.sessions == [(True, USER), (True, USER)]
    (kj,) = server.handler.to(KJ)
    assert kj["Subject"].startswith(f"【{COLUMN}】刊发情况周报第")
    assert deliveries(sessions)[NN].status == "sent"


def test_an_untrusted_certificate_stops_the_run_and_says_what_to_set(
    sessions: sessionmaker[Session],
    now: datetime,
    tmp_path: Path,
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed(sessions, now)
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    monkeypatch.delenv(CA_FILE_ENV, raising=False)  # the system CAs do not know the test CA
    config = tls_config(tmp_path, server)
    sleeps: list[float] = []
    with pytest.raises(MailTransportError, match=f"certificate not trusted.*{CA_FILE_ENV}"):
        send_digest(sessions, config, WEEK, SEND_TIME, sleep=sleeps.append)
    assert sleeps == []  # a configuration error: no retries
    assert server.auth.attempts == [] and server.handler.messages == []
    rows = deliveries(sessions)
    assert rows[KJ].status == "pending" and CA_FILE_ENV in (rows[KJ].last_error or "")


def test_a_wrong_password_stops_the_run_without_retrying(
    sessions: sessionmaker[Session],
    now: datetime,
    tmp_path: Path,
    pki: Pki,
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed(sessions, now)
    monkeypatch.setenv(PASSWORD_ENV, "wrong")
    monkeypatch.setenv(CA_FILE_ENV, str(pki.ca_file))
    config = tls_config(tmp_path, server)
    sleeps: list[float] = []
    with pytest.raises(MailTransportError, match="535"):
        send_digest(sessions, config, WEEK, SEND_TIME, sleep=sleeps.append)
    assert sleeps == [] and [ok for _, _, ok in server.auth.attempts] == [False]
    assert server.handler.messages == []
    assert deliveries(sessions)[KJ].status == "pending"


def test_a_non_ascii_password_is_a_clear_configuration_error(
    sessions: sessionmaker[Session],
    now: datetime,
    tmp_path: Path,
    pki: Pki,
    server: Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seed(sessions, now)
    monkeypatch.setenv(PASSWORD_ENV, "密码")  # smtplib can only send ASCII credentials
    monkeypatch.setenv(CA_FILE_ENV, str(pki.ca_file))
    with pytest.raises(MailTransportError, match="must be ASCII"):
        send_digest(sessions, tls_config(tmp_path, server), WEEK, SEND_TIME, sleep=lambda s: None)
    assert server.handler.messages == [] and deliveries(sessions)[KJ].status == "pending"
