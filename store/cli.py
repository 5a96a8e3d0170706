"""`python -m store.cli keys create|revoke|list` and `secrets reencrypt`: administration from the command line."""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy import Engine

from config import get_settings
from store.db import make_engine
from store.keys import create_key, list_keys, revoke_key
from store.secrets_box import SecretBox
from store.webhook_secrets import reencrypt


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
    secrets_area = sub.add_parser("secrets", help="webhook signing secrets at rest")
    secrets_actions = secrets_area.add_subparsers(dest="action", required=True)
    secrets_actions.add_parser(
        "reencrypt", help="re-encrypt every secret under the first key of ASSAY_SECRETS_KEYS (online, in chunks)"
    )
    args = parser.parse_args(argv)

    settings = get_settings()
    engine = make_engine(settings, pool_size=1)
    if args.area == "secrets":
        done = reencrypt_all(engine, SecretBox(settings.secrets_key_list))
        print(f"re-encrypted {done} webhook secrets under the first key")
        engine.dispose()
        return 0
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


def reencrypt_all(engine: Engine, box: SecretBox, chunk: int = 500) -> int:
    """Every secret under the box's first key, a chunk per transaction; returns how many."""
    done, after = 0, 0
    while True:
        with engine.begin() as conn:
            count, after = reencrypt(conn, box, after, chunk)
        done += count
        if count < chunk:
            return done


if __name__ == "__main__":
    sys.exit(main())
