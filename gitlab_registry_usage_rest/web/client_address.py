"""Which address a request comes from: the peer's, or, on a connection from a trusted proxy, the client it names.

``X-Forwarded-For`` is a list every proxy appends its own peer to. Only the entries added by proxies we trust
are worth anything: read from the right, each trusted address hands over to the one on its left, and the first
address that is not trusted is the client. Whatever stands left of it was written by the client itself. A
header on a connection that does not come from a trusted proxy is ignored: otherwise a client that reaches the
port directly could pick a new address (and a fresh login limit) for each guess.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from ..config import Network

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Where the address of the connection itself is kept when REMOTE_ADDR is replaced (for logs and tests).
PEER_KEY = "gitlab_registry_usage_rest.peer_addr"


def parse_address(text: str) -> Address | None:
    """An address as proxies write it (``192.0.2.1``, ``192.0.2.1:443``, ``2001:db8::1``, ``[2001:db8::1]:443``),
    IPv4-mapped IPv6 as IPv4; None if it is none (``unknown``, an obfuscated RFC 7239 name, garbage)."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The proxies whose ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed."""

    def __init__(self, networks: Iterable[Network]) -> None:
        self._networks = tuple(networks)

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in network for network in self._networks)

    def client(self, peer: str, forwarded_for: str) -> tuple[str, int]:
        """The client's address and how many trusted proxies handed the request on (0: the peer is the client)."""
        address = parse_address(peer)
        if not self.trusts(address):
            return peer, 0
        client, hops = str(address), 1
        for entry in reversed(forwarded_for.split(",") if forwarded_for.strip() else []):
            hop = parse_address(entry)
            if hop is None:
                # A trusted proxy writes the address it saw; anything else came from the client's side.
                break
            client = str(hop)
            if not self.trusts(hop):
                break
            hops += 1
        return client, hops


class ClientAddress:
    """WSGI middleware: behind trusted proxies, ``REMOTE_ADDR`` and the scheme become the client's."""

    def __init__(self, app: WSGIApplication, trusted: Sequence[Network]) -> None:
        self._app = app
        self._proxies = TrustedProxies(trusted)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        peer = environ.get("REMOTE_ADDR") or ""
        client, hops = self._proxies.client(peer, environ.get("HTTP_X_FORWARDED_FOR", ""))
        if hops:
            environ[PEER_KEY] = peer
            environ["REMOTE_ADDR"] = client
            # Each proxy may add the scheme it was reached by; the outermost trusted one saw the client's.
            schemes = [value.strip().lower() for value in environ.get("HTTP_X_FORWARDED_PROTO", "").split(",")]
            scheme = schemes[max(0, len(schemes) - hops)]
            if scheme in ("http", "https"):
                environ["wsgi.url_scheme"] = scheme
        return self._app(environ, start_response)
