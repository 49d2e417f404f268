"""TLS for the one port: with a certificate and key, WebSockets become wss://
and the pages https://, served by the same listener (docs/security.md)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


class TLSConfigError(ValueError):
    """The certificate or key cannot be used; the message says which and why."""


@dataclass(frozen=True)
class TLSFiles:
    certfile: str  # PEM; may hold the chain after the leaf certificate
    keyfile: str | None = None  # None: the key is in certfile

    def context(self) -> ssl.SSLContext:
        """A server context (TLS 1.2 or newer), or a clear error at startup."""
        for path in (self.certfile, self.keyfile):
            if path is not None and not Path(path).is_file():
                raise TLSConfigError(f"TLS file not found: {path}")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.certfile, self.keyfile)
        except (ssl.SSLError, OSError) as exc:
            raise TLSConfigError(
                f"cannot use certificate {self.certfile} with key {self.keyfile}: {exc}"
            ) from None
        return context


def tls_from_args(certfile: str | None, keyfile: str | None) -> TLSFiles | None:
    if certfile is None:
        if keyfile is not None:
            raise TLSConfigError("--keyfile needs --certfile")
        return None
    return TLSFiles(certfile, keyfile)
