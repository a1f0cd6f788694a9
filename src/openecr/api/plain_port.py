"""The HTTP protocol of a plain-HTTP port, which says what a TLS handshake on it is.

docker, skopeo and buildah try HTTPS first, even on loopback; uvicorn answers each try with a
400 and logs ``Invalid HTTP request received.``. This protocol answers the same 400 (so the
clients' fallback to plain HTTP is unchanged) and instead logs, once per client address, that
a client tried TLS on this plain-HTTP port (later tries from that address at debug level).
"""

from __future__ import annotations

import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("openecr.http")

_TOLD_LIMIT = 1024  # client addresses remembered per server (then forgotten all at once)


def is_tls_handshake(data: bytes) -> bool:
    """Whether ``data`` starts a TLS record of type handshake (TLS 1.0 to 1.3)."""
    return len(data) >= 3 and data[0] == 0x16 and data[1] == 0x03 and data[2] <= 0x04


def tls_notice(client: str) -> str:
    return (
        f"a client at {client} tried TLS (HTTPS) on this plain-HTTP port and got a 400: docker, "
        "skopeo and buildah try HTTPS first, then fall back to HTTP for loopback and insecure "
        "registries (harmless); --tls-cert and --tls-key serve HTTPS. Further tries from "
        f"{client} are logged at debug level"
    )


class PlainPortProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with TLS handshakes answered quietly (see the module)."""

    _started = False

    def data_received(self, data: bytes) -> None:
        if not self._started:
            self._started = True
            if is_tls_handshake(data):
                host = self.client[0] if self.client else "-"
                # one set per server (its state is shared by its connections)
                told: set[str] | None = getattr(self.server_state, "openecr_tls_told", None)
                if told is None:
                    told = set()
                    self.server_state.openecr_tls_told = told  # type: ignore[attr-defined]
                if host in told:
                    log.debug("a client at %s tried TLS on this plain-HTTP port again", host)
                else:
                    if len(told) >= _TOLD_LIMIT:
                        told.clear()
                    told.add(host)
                    log.warning("%s", tls_notice(host))
                self.send_400_response("This port serves plain HTTP, not TLS")
                return
        super().data_received(data)
