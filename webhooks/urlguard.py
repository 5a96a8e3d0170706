"""Request-forgery guard for webhook URLs: checked at submission and again on the connected socket.

The second check runs on the address the socket actually connected to, so a DNS answer that
changes between submission and delivery (DNS rebinding) cannot steer a webhook into the
private network.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit

# Not "private" in the stdlib's sense but never a webhook receiver either.
_EXTRA_BLOCKED = [ipaddress.ip_network(n) for n in ("100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15")]


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
#: What a webhook URL may look like: http(s), a host name or bracketed IPv6 address, a port, then any
#: printable ASCII. Published in the OpenAPI document; whether the host is public is checked after.
URL_PATTERN = rf"^https?://(?:{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]{{2,45}}\])(?::{_PORT})?(?:[/?#][!-~]*)?$"


class UnsafeURLError(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def address_blocked(address: str) -> bool:
    """Loopback, private, link-local (cloud metadata 169.254.169.254), multicast, reserved or unspecified."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or any(ip in net for net in _EXTRA_BLOCKED if ip.version == net.version)
    )


def check_webhook_url(url: str, *, allow_private: bool, max_chars: int = 2048) -> None:
    """Raise UnsafeURLError unless url is http(s) to a host whose every address is public."""
    if len(url) > max_chars:
        raise UnsafeURLError("invalid_webhook_url", f"the webhook URL is longer than {max_chars} characters")
    if not re.fullmatch(URL_PATTERN, url):
        raise UnsafeURLError(
            "invalid_webhook_url",
            "the webhook URL must be http(s)://host[:port][/path] in printable ASCII (percent-encode the rest)",
        )
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # e.g. http://[abc/ : an unterminated IPv6 literal
        raise UnsafeURLError("invalid_webhook_url", "the webhook URL cannot be parsed") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise UnsafeURLError("invalid_webhook_url", "the webhook URL must be an absolute http:// or https:// URL")
    if parts.username or parts.password:
        raise UnsafeURLError("invalid_webhook_url", "credentials in the webhook URL are not allowed")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeURLError("invalid_webhook_url", "the webhook URL has an invalid port") from None
    if allow_private:
        return
    try:
        infos = socket.getaddrinfo(hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, ValueError):
        raise UnsafeURLError("invalid_webhook_url", f"the webhook host {parts.hostname!r} does not resolve") from None
    blocked = sorted({info[4][0] for info in infos if address_blocked(info[4][0])})
    if blocked:
        raise UnsafeURLError(
            "webhook_url_forbidden",
            f"the webhook host resolves to a non-public address ({', '.join(blocked)})",
        )
