"""Flask's JSON responses written by orjson, with the standard library's output as the fallback.

A 100-job batch answers with 100 job documents; `json.dumps` spent 2 % of an API worker's time on
them (bench.profile_api --batch 100), orjson a tenth of that. What a client receives is the same JSON
value: compact, keys in insertion order, datetimes and dataclasses still go through Flask's own
`default` (datetimes as HTTP dates, as before). Anything orjson refuses (an integer beyond 64 bits
echoed from metadata, which Python's json accepted on the way in) is written by the standard library,
so no answer turns into a 500.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Response
from flask.json.provider import DefaultJSONProvider

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class OrjsonProvider(DefaultJSONProvider):
    """`jsonify` and `app.json.dumps` through orjson; pretty-printing (debug) stays on the standard library."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if kwargs.get("indent") is not None:
            return super().dumps(obj, **kwargs)
        return self._encode(obj).decode()

    def response(self, *args: Any, **kwargs: Any) -> Response:
        if (self.compact is None and self._app.debug) or self.compact is False:
            return super().response(*args, **kwargs)
        obj = self._prepare_response_obj(args, kwargs)
        return self._app.response_class(self._encode(obj) + b"\n", mimetype=self.mimetype)

    def _encode(self, obj: Any) -> bytes:
        try:
            return orjson.dumps(obj, default=self.default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().dumps(obj, separators=(",", ":")).encode()
