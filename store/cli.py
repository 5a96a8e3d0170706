"""`python -m store.cli keys create|revoke|list`: API key administration from the command line."""

from __future__ import annotations

import argparse
import json
import sys

from config import get_settings
from store.db import make_engine
from store.keys import create_key, list_keys, revoke_key


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m store.cli", description=__doc__)
    sub = parser.add_subparsers(dest="area", required=True)
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="action", required=True)
    create = keys.add_parser("create", help="issue a key for a tenant (created on first use)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--label", default="")
    create.add_argument("--json", action="store_true", help="print {key_id, tenant_id, key} as JSON")
    revoke = keys.add_parser("revoke", help="revoke a key by its id (key_...)")
    revoke.add_argument("key_id")
    keys.add_parser("list", help="list keys (never the secrets)")
    args = parser.parse_args(argv)

    engine = make_engine(get_settings(), pool_size=1)
    with engine.begin() as conn:
        if args.action == "create":
            issued = create_key(conn, args.tenant, args.label)
            if args.json:
                print(json.dumps({"key_id": issued.key_id, "tenant_id": issued.tenant_id, "key": issued.secret}))
            else:
                print(f"key id: {issued.key_id}")
                print(f"tenant: {issued.tenant_name} ({issued.tenant_id})")
                print(f"key:    {issued.secret}")
                print("Store the key now: only its hash is kept.", file=sys.stderr)
        elif args.action == "revoke":
            if not revoke_key(conn, args.key_id):
                print(f"no live key {args.key_id}", file=sys.stderr)
                return 1
            print(f"revoked {args.key_id}")
        else:
            for row in list_keys(conn):
                print(json.dumps(row, default=str))
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
