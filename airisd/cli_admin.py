"""``airisd user ...`` and ``airisd token ...``: accounts and API keys in the data directory's auth.db.

    airisd user add NAME --role ROLE     password from a prompt, stdin, or --generate
    airisd user passwd NAME              tokens issued before the change stop working
    airisd user role NAME ROLE
    airisd user del NAME
    airisd user list [--json]
    airisd token create --role writer --name host-01    prints the key once, on stdout
    airisd token list [--all] [--json]
    airisd token revoke ID|NAME

They work while the daemon runs (auth.db is SQLite in WAL mode); the daemon sees a change within
5 seconds (its caches). The data directory comes from ``--data-dir`` or the config's
``agent.data_dir``; ``[[auth.users]]`` from the config are listed but changed only in the file.
"""

from __future__ import annotations

import argparse
import getpass
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from airisd.auth.apikeys import ApiKeyStore
from airisd.auth.db import AuthDB
from airisd.auth.principal import ROLES
from airisd.auth.users import UserStore, parse_config_users
from airisd.errors import ApiError, ValidationError
from airisd.timeparse import format_ts

ConfigArgs = Callable[..., None]
Command = Callable[[argparse.Namespace], int]


@contextmanager
def _open(args: argparse.Namespace) -> Iterator[tuple[UserStore, ApiKeyStore]]:
    """The stores of the configured data directory, with the config file's ``[[auth.users]]``."""
    from airisd.auth.http import parse_auth_config
    from airisd.cli import _load

    config = _load(args)
    auth = parse_auth_config(config.auth, source=config.source)
    config_users = parse_config_users(auth.users, source=f"{config.source}: auth.users")
    db = AuthDB.in_dir(Path(config.agent.data_dir))
    try:
        yield UserStore(db, config_users=config_users), ApiKeyStore(db)
    finally:
        db.close()


def _when(secs: int | None) -> str:
    return format_ts(secs * 1_000_000_000) if secs else "-"


def _read_password(args: argparse.Namespace) -> str:
    """From ``--generate`` (printed once), a prompt typed twice on a terminal, or stdin's first line."""
    if args.generate:
        password = secrets.token_urlsafe(18)
        print(f"generated password: {password}", file=sys.stderr)
        return password
    if not args.password_stdin and sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("password again: "):
            raise ValidationError("the two passwords differ", details={"field": "password"})
        return first
    line = sys.stdin.readline()
    return line[:-1] if line.endswith("\n") else line


def _print_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[c]) for r in [headers, *rows]) for c in range(len(headers))]
    for row in [headers, *rows]:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


# --- users -----------------------------------------------------------------------------------------


def cmd_user_add(args: argparse.Namespace) -> int:
    with _open(args) as (store, _):
        info = store.add(args.name, args.account_role, _read_password(args))
    print(f"added user {info.name} with role {info.role}")
    return 0


def cmd_user_passwd(args: argparse.Namespace) -> int:
    with _open(args) as (store, _):
        store.passwd(args.name, _read_password(args))
    print(f"changed the password of {args.name}; tokens issued before now no longer work")
    return 0


def cmd_user_role(args: argparse.Namespace) -> int:
    with _open(args) as (store, _):
        store.set_role(args.name, args.account_role)
    print(f"{args.name} now has role {args.account_role}; tokens issued before now no longer work")
    return 0


def cmd_user_del(args: argparse.Namespace) -> int:
    with _open(args) as (store, _):
        store.delete(args.name)
    print(f"deleted user {args.name}")
    return 0


def cmd_user_list(args: argparse.Namespace) -> int:
    with _open(args) as (store, _):
        users = store.list()
    if args.json:
        print(orjson.dumps([{"name": u.name, "role": u.role, "source": u.source,
                             "created_at": _when(u.created_at), "updated_at": _when(u.updated_at)}
                            for u in users]).decode())
        return 0
    _print_table(("NAME", "ROLE", "SOURCE", "CREATED", "UPDATED"),
                 [(u.name, u.role, u.source, _when(u.created_at), _when(u.updated_at)) for u in users])
    return 0


# --- API keys --------------------------------------------------------------------------------------


def cmd_token_create(args: argparse.Namespace) -> int:
    with _open(args) as (_, store):
        new = store.create(args.name, args.account_role)
    print(new.key)
    print(f"created API key {new.id} named {new.name} with role {new.role}. The key above is shown once "
          "and not stored: keep it now. Use it as `Authorization: Bearer <key>`.", file=sys.stderr)
    return 0


def cmd_token_list(args: argparse.Namespace) -> int:
    with _open(args) as (_, store):
        keys = store.list(include_revoked=args.all)
    if args.json:
        print(orjson.dumps([{"id": k.id, "name": k.name, "role": k.role, "created_at": _when(k.created_at),
                             "revoked_at": _when(k.revoked_at) if k.revoked_at else None}
                            for k in keys]).decode())
        return 0
    _print_table(("ID", "NAME", "ROLE", "CREATED", "REVOKED"),
                 [(k.id, k.name, k.role, _when(k.created_at), _when(k.revoked_at)) for k in keys])
    return 0


def cmd_token_revoke(args: argparse.Namespace) -> int:
    with _open(args) as (_, store):
        info = store.revoke(args.key)
    print(f"revoked API key {info.id} named {info.name}; the daemon refuses it within 5 seconds")
    return 0


def _guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """A refused request (bad name, unknown user, last admin) is a message and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except ApiError as exc:
            print(f"airisd: error: {exc.message}", file=sys.stderr)
            return 1

    return run


def register(sub: Any, config_args: ConfigArgs) -> None:
    """Add ``user`` and ``token`` to the ``airisd`` parser's subcommands."""

    def password_args(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument("--password-stdin", action="store_true",
                           help="read the password from stdin's first line "
                                "(the default when stdin is not a terminal)")
        group.add_argument("--generate", action="store_true", help="generate a password and print it once")

    def add(parent: Any, name: str, fn: Command, help_: str) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_, description=help_)
        config_args(p, overrides=False)  # --config only: --role here is the account's role
        p.add_argument("--data-dir", dest="data_dir", metavar="DIR", help="overrides agent.data_dir")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", default=[],
                       help="override a config key (repeatable)")
        p.set_defaults(fn=_guarded(fn))
        return p

    user = sub.add_parser("user", help="manage password accounts in the data directory's auth.db")
    user_sub = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)
    p = add(user_sub, "add", cmd_user_add, "add a user")
    p.add_argument("name")
    p.add_argument("--role", dest="account_role", required=True, choices=ROLES)
    password_args(p)
    p = add(user_sub, "passwd", cmd_user_passwd, "set a user's password (their older tokens stop working)")
    p.add_argument("name")
    password_args(p)
    p = add(user_sub, "role", cmd_user_role, "change a user's role (their older tokens stop working)")
    p.add_argument("name")
    p.add_argument("account_role", metavar="ROLE", choices=ROLES)
    p = add(user_sub, "del", cmd_user_del, "delete a user (not the last admin)")
    p.add_argument("name")
    p = add(user_sub, "list", cmd_user_list, "list users and their roles")
    p.add_argument("--json", action="store_true", help="print JSON")

    token = sub.add_parser("token", help="manage long-lived API keys for agents")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    p = add(token_sub, "create", cmd_token_create, "create an API key and print it once")
    p.add_argument("--name", required=True, help="a unique name among active keys, e.g. the host")
    p.add_argument("--role", dest="account_role", required=True, choices=ROLES,
                   help="usually writer (agents) or reader (dashboards)")
    p = add(token_sub, "list", cmd_token_list, "list API keys (never their secrets)")
    p.add_argument("--all", action="store_true", help="include revoked keys")
    p.add_argument("--json", action="store_true", help="print JSON")
    p = add(token_sub, "revoke", cmd_token_revoke, "revoke an API key by id or name")
    p.add_argument("key", metavar="ID|NAME")
