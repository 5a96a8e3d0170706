"""One bounded HTTP POST to a receiver, on keep-alive connections, guarded against request forgery.

Bounded three ways, because a receiver is a stranger: the whole attempt (connect, send, read) has one
deadline, enforced by a gevent timeout in the webhook worker and by socket timeouts everywhere; at most
`max_body` bytes of the answer are read, raw (never gunzipped: a gzip bomb costs nothing); and each
receiver gets a bounded pool of connections. A connection is reused only if its answer was read to the
end; anything else is closed.

The forgery guard resolves the host at each new connection and connects only to public addresses (then
checks the connected peer as well), so a DNS answer that changes between submission and delivery (DNS
rebinding) cannot steer a webhook into the private network, nor even open a TCP connection there;
proxies from the environment are never used for the same reason.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from typing import Any

from urllib3 import PoolManager, Timeout
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, HTTPError, NameResolutionError
from urllib3.util.connection import allowed_gai_family

from webhooks.urlguard import address_blocked

USER_AGENT = "Assay-Webhooks/1.0"


class BlockedAddressError(OSError):
    """Raised on a connected socket whose peer is not public (DNS rebinding, or a changed record)."""


class AttemptDeadlineError(TimeoutError):
    """The whole attempt ran past its deadline."""


def _refused(address: str) -> BlockedAddressError:
    shown = ipaddress.ip_address(address.partition("%")[0])
    return BlockedAddressError(f"refused to deliver to non-public address {shown}")


class _GuardedConnectionMixin:
    """Resolve, refuse if any address is not public, connect only to the vetted addresses, then check the peer.

    The check comes before the connect: refusing after it let the private peer see a TCP handshake, and told
    the tenant (in the attempt's error) an open port ("non-public address") from a closed one ("Connection
    refused"): a port scanner of the deliverer's network through DNS rebinding. Now a refused URL never
    leaves the host, with the same error whatever listens there."""

    _dns_host: str
    port: int

    def _new_conn(self) -> Any:
        name = self._dns_host
        try:
            infos = socket.getaddrinfo(name.strip("[]"), self.port, allowed_gai_family(), socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(name, self, exc) from exc  # type: ignore[arg-type]
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
        if blocked := [a for a in addresses if address_blocked(a)]:
            raise _refused(blocked[0])  # as at submission: one non-public answer refuses the host
        last: BaseException | None = None
        for address in addresses:
            self._dns_host = address  # what urllib3 connects to; `host` (Host header, TLS name) reads it too
            try:
                sock = super()._new_conn()  # type: ignore[misc]
            except ConnectTimeoutError as exc:  # refused or timed out (NewConnectionError is one): the next
                last = exc
                continue
            finally:
                self._dns_host = name
            peer = sock.getpeername()[0]
            if address_blocked(peer):  # cannot happen after the check above; kept as the last word
                sock.close()
                raise _refused(peer)
            return sock
        assert last is not None
        raise last


class _GuardedHTTPConnection(_GuardedConnectionMixin, HTTPConnection):
    pass


class _GuardedHTTPSConnection(_GuardedConnectionMixin, HTTPSConnection):
    pass


class _GuardedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _GuardedHTTPConnection


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


@dataclass(frozen=True)
class Answer:
    """What the receiver said. `error` set means the attempt failed, even with a status: an answer that
    does not end within the deadline and the size bound is not an answer a receiver stands behind."""

    status: int | None
    headers: dict[str, str]  # lower-cased names; only what the policy reads
    error: str | None


def _deadline_guard(seconds: float) -> Any:
    """A gevent timeout for the whole attempt where gevent runs the worker; nothing elsewhere."""
    try:
        from gevent import Timeout, monkey
    except ImportError:  # pragma: no cover - gevent is a pinned dependency
        return None
    if not monkey.is_module_patched("socket"):
        return None
    return Timeout(seconds, AttemptDeadlineError(f"no complete answer within {seconds:g} s"))


class WebhookHttp:
    """One per webhook worker process: the connection pools of every receiver."""

    def __init__(self, *, allow_private: bool, per_host: int, deadline_seconds: float, max_body: int) -> None:
        self.deadline_seconds = deadline_seconds
        self.max_body = max_body
        self.pools = PoolManager(num_pools=1000, maxsize=per_host, block=False, retries=False)
        if not allow_private:
            self.pools.pool_classes_by_scheme = {"http": _GuardedHTTPPool, "https": _GuardedHTTPSPool}

    def post(self, url: str, body: bytes, headers: dict[str, str]) -> Answer:
        """POST and read at most `max_body` bytes of the answer, all within the deadline. Never raises."""
        started = time.monotonic()
        deadline = started + self.deadline_seconds
        guard = _deadline_guard(self.deadline_seconds)
        if guard is not None:
            guard.start()
        response = None
        try:
            response = self.pools.urlopen(
                "POST",
                url,
                body=body,
                headers={**headers, "user-agent": USER_AGENT},
                redirect=False,
                retries=False,
                preload_content=False,
                decode_content=False,
                timeout=Timeout(connect=min(5.0, self.deadline_seconds), read=self.deadline_seconds),
            )
            complete = self._read(response, deadline)
            answer = Answer(
                response.status,
                {k.lower(): v for k, v in response.headers.items() if k.lower() in ("retry-after", "location")},
                None if complete else f"answer larger than {self.max_body} bytes",
            )
            if complete:
                response.release_conn()
            else:
                response.close()  # an answer we did not read to the end: the connection is not reused
            response = None
            return answer
        except AttemptDeadlineError:
            status = response.status if response is not None else None
            return Answer(status, {}, f"timeout: no complete answer within {self.deadline_seconds:g} s")
        except (HTTPError, OSError) as exc:
            if isinstance(exc, TimeoutError) or "timed out" in str(exc).lower():
                return Answer(None, {}, f"timeout: no complete answer within {self.deadline_seconds:g} s")
            reason = getattr(exc, "reason", None) or exc
            return Answer(None, {}, f"connection error: {type(reason).__name__}: {reason}"[:500])
        finally:
            if guard is not None:
                guard.close()
            if response is not None:
                response.close()

    def _read(self, response: Any, deadline: float) -> bool:
        """Read the body, raw, until its end, `max_body` bytes, or the deadline; True if it ended."""
        read = 0
        while read <= self.max_body:
            if time.monotonic() > deadline:
                raise AttemptDeadlineError("deadline")
            chunk = response.read1(min(16_384, self.max_body + 1 - read))
            if not chunk:
                return True
            read += len(chunk)
        return False
