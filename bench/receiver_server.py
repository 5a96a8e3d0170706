"""A webhook receiver for benchmarks, in a process of its own: gevent WSGI, keep-alive, every request
verified with the `standardwebhooks` library, one line per request appended to a log file.

    python -m bench.receiver_server PORT LOGFILE SECRET [SECRET ...] [--delay SECONDS]

Line: `<receive unix time> <status> <valid 0|1> <webhook-id> <type> <job id>`.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402
from standardwebhooks import Webhook, WebhookVerificationError  # noqa: E402


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("log")
    parser.add_argument("secrets", nargs="+")
    parser.add_argument("--delay", type=float, default=0.0, help="answer after this many seconds")
    args = parser.parse_args(argv)
    verifiers = [Webhook(secret) for secret in args.secrets]
    log = open(args.log, "a", buffering=1)  # noqa: SIM115 - open for the server's life

    def verified(body: bytes, headers: dict[str, str]) -> bool:
        for verifier in verifiers:
            try:
                verifier.verify(body, headers)
                return True
            except WebhookVerificationError:
                continue
        return False

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = environ["wsgi.input"].read()
        headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if args.delay:
            gevent.sleep(args.delay)
        valid = verified(body, headers)
        payload = json.loads(body) if valid else {}
        fields = (headers.get("webhook-id", "-"), payload.get("type", "-"), payload.get("data", {}).get("id", "-"))
        log.write(f"{time.time():.6f} 204 {int(valid)} {' '.join(fields)}\n")
        start_response("204 No Content", [])
        return [b""]

    WSGIServer(("127.0.0.1", args.port), app, log=None, error_log=None).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
