"""`python -m store.cli keys create|revoke|list`, `secrets reencrypt` and `limits set|show`: administration."""

from __future__ import annotations

import argparse
import json
import sys

from sqlalchemy import Connection, Engine, select

from config import get_settings
from config.settings import run_command
from store.db import make_engine
from store.keys import create_key, list_keys, revoke_key
from store.limits import OVERRIDABLE, overrides_for, set_overrides
from store.secrets_box import SecretBox
from store.tables import tenants
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
    limits_area = sub.add_parser("limits", help="per-tenant overrides of rate limits and quotas")
    limits_actions = limits_area.add_subparsers(dest="action", required=True)
    set_limits = limits_actions.add_parser("set", help="override some limits for a tenant (0 clears an override)")
    show_limits = limits_actions.add_parser("show", help="a tenant's overrides (unset: the settings apply)")
    for action in (set_limits, show_limits):
        action.add_argument("--tenant", required=True, help="the tenant's name")
    for name in OVERRIDABLE:
        set_limits.add_argument("--" + name.replace("_", "-"), type=int, metavar="N")
    args = parser.parse_args(argv)

    settings = get_settings()
    engine = make_engine(settings, pool_size=1)
    if args.area == "secrets":
        done = reencrypt_all(engine, SecretBox(settings.secrets_key_list))
        print(f"re-encrypted {done} webhook secrets under the first key")
        engine.dispose()
        return 0
    if args.area == "limits":
        with engine.begin() as conn:
            code = tenant_limits_command(conn, args)
        engine.dispose()
        return code
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


def tenant_limits_command(conn: Connection, args: argparse.Namespace) -> int:
    tenant = conn.execute(select(tenants.c.id).where(tenants.c.name == args.tenant)).scalar_one_or_none()
    if tenant is None:
        print(
            f"no tenant named {args.tenant!r}: a tenant exists once it has a key "
            f"(python -m store.cli keys create --tenant {args.tenant}, or make key TENANT={args.tenant})",
            file=sys.stderr,
        )
        return 1
    if args.action == "set":
        given = {name: getattr(args, name) for name in OVERRIDABLE if getattr(args, name) is not None}
        if any(value < 0 for value in given.values()):
            print("limits are positive (0 clears an override)", file=sys.stderr)
            return 1
        set_overrides(conn, tenant, {name: value or None for name, value in given.items()})
    print(json.dumps({"tenant": args.tenant, "tenant_id": tenant, "overrides": overrides_for(conn, tenant)}))
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
    sys.exit(run_command(main))
