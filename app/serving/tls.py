"""TLS to `url: https://...` engines: one verifying SSL context per variant, built (and checked) at start.

Verification is always on: the engine's certificate must chain to the variant's
`tls.ca_file` (or, without one, to the system trust store) and name the URL's
host (SNI and hostname check). There is no setting that turns it off: a
certificate the gateway cannot verify is a connection failure (the variant is
reported down, requests answer 503), never a silent plain or unverified link.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from app.config.variants import TlsOptions
from moeprune.errors import UserError


def client_context(name: str, tls: TlsOptions | None) -> ssl.SSLContext:
    """The verifying context for variant `name`; a UserError naming the field when a file is missing or bad."""
    field = f"variants.{name}.tls"
    ca_file = tls.ca_file if tls else None
    if ca_file is not None:
        _readable(f"{field}.ca_file", ca_file)
    try:
        context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    except ssl.SSLError as exc:
        raise UserError(
            f"{field}.ca_file: {ca_file} holds no usable PEM CA certificate ({exc.reason or exc}); "
            "give the PEM bundle of the CA that signed the engine's certificate"
        ) from None
    if ca_file is not None and not context.get_ca_certs():
        raise UserError(
            f"{field}.ca_file: {ca_file} holds no CA certificate; give the PEM bundle of the CA "
            "that signed the engine's certificate"
        )
    if tls is not None and tls.cert_file is not None:
        _readable(f"{field}.cert_file", tls.cert_file)
        if tls.key_file is not None:
            _readable(f"{field}.key_file", tls.key_file)
        try:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file) if tls.key_file else None)
        except ssl.SSLError as exc:
            raise UserError(
                f"{field}.key_file: the client certificate {tls.cert_file} and its key "
                f"{tls.key_file or '(none: expected inside cert_file)'} do not load together "
                f"({exc.reason or exc}); give a PEM certificate and its matching unencrypted key"
            ) from None
    context.check_hostname = True  # the defaults, spelled out: never downgraded
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def _readable(field: str, path: Path) -> None:
    try:
        Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{field}: cannot read {path}: {exc.strerror}; give the path of a PEM file") from None


def origin(url: str) -> tuple[str, str, int]:
    parsed = httpx.URL(url)
    return parsed.scheme, parsed.host, parsed.port or (443 if parsed.scheme == "https" else 80)
