"""Sub-commands of `python -m assistant` for adapter versions (assistant/cli.py calls `register`).

    python -m assistant versions              # the versions, their gate results, what is live / canary
    python -m assistant promote v0003 [--force]
    python -m assistant rollback [v0002]      # no version: back to the base model

When a server answers on the configured host/port, the change goes through its admin REST API (token from
ASSISTANT_ADMIN_TOKEN or data/admin-token) so it takes effect at once; otherwise it is written to the
database and the next `serve` starts with it. Each command says which of the two happened.

To add a sub-command (train, eval, ...): write `add_<name>(subparsers)` that creates its parser and sets
`func`, then append it to SUBCOMMANDS below.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from assistant.settings import Settings, add_cli_flags, settings_from_args


# ---------------------------------------------------------------------------- talking to a server
def _token(settings: Settings) -> str | None:
    if settings.admin_token:
        return settings.admin_token
    path = settings.admin_token_path
    return path.read_text().strip() if path.is_file() else None


def _base_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host
    return f"http://{host}:{settings.port}"


def server_running(settings: Settings, timeout: float = 1.0) -> bool:
    """True when our server answers /health at the configured host/port."""
    try:
        with urllib.request.urlopen(_base_url(settings) + "/health", timeout=timeout) as response:
            return bool(response.status == 200 and "status" in json.loads(response.read() or b"{}"))
    except (OSError, ValueError):
        return False


class RemoteError(Exception):
    pass


def call_api(settings: Settings, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """One admin REST call; raises RemoteError with the server's message."""
    token = _token(settings)
    if not token:
        raise RemoteError(f"no admin token: set ASSISTANT_ADMIN_TOKEN or create {settings.admin_token_path}")
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        _base_url(settings) + path, data=data, method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise RemoteError(f"HTTP {exc.code}: {message}") from None


# ---------------------------------------------------------------------------- working on the database
def open_offline(settings: Settings) -> tuple[Any, Any, Any]:
    """(store, registry, router without an engine) for changes the next server start will serve."""
    from assistant.model import prepare_model_dir
    from assistant.routing import VersionRouter
    from feedback.store import Store
    from training.registry import Registry

    if not settings.db_path.is_file():
        raise SystemExit(f"error: no database at {settings.db_path}; start the server once or set "
                         "ASSISTANT_DATA_DIR / --data-dir")
    store = Store(settings.db_path)
    model_dir, _ = prepare_model_dir(settings.model_path, settings.data_dir)
    registry = Registry.for_model(store, settings.adapters_dir, model_dir)
    return store, registry, VersionRouter(registry, None, store)


def _run(settings: Settings, remote: Callable[[], Any], offline: Callable[[Any], Any], done: str) -> int:
    """Do the change through the running server if there is one, else in the database; say which."""
    from assistant.errors import AssistantError

    if server_running(settings):
        try:
            remote()
        except RemoteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        print(f"{done} — applied by the running server at {_base_url(settings)}")
        return 0
    store, _, router = open_offline(settings)
    try:
        offline(router)
    except AssistantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(f"{done} — no server running at {_base_url(settings)}: written to {settings.db_path}; "
          "the next `serve` uses it")
    return 0


# ---------------------------------------------------------------------------- commands
def format_versions(rows: list[dict[str, Any]], live: str | None, canary: str | None, share: float) -> str:
    lines = [f"live: {live or 'base'}" + (f"   canary: {canary} ({share:.0%} of new conversations)" if canary
                                          else "")]
    if not rows:
        lines.append("no versions yet: train one (python -m assistant train)")
        return "\n".join(lines)
    lines.append(f"{'version':<10} {'parent':<10} {'status':<10} {'gate':<8} {'dataset':<13} created")
    for row in rows:
        gate = {True: "passed", False: "FAILED", None: "-"}[row["gate_passed"]]
        mark = " *live" if row["id"] == live else (" *canary" if row["id"] == canary else "")
        lines.append(f"{row['id']:<10} {row['parent'] or 'base':<10} {row['status']:<10} {gate:<8} "
                     f"{(row['dataset_hash'] or '-')[:12]:<13} {row['created_at'] or ''}{mark}")
    return "\n".join(lines)


def cmd_versions(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if server_running(settings):
        try:
            body = call_api(settings, "GET", "/admin/versions")
        except RemoteError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        rows, live, canary, share = body["data"], body["live"], body["canary"], body["canary_share"]
        source = f"from the running server at {_base_url(settings)}"
    else:
        store, registry, _ = open_offline(settings)
        try:
            registry.sync()
            rows, live = registry.list_versions(), registry.live()
            canary, share = registry.canary()
        finally:
            store.close()
        source = f"from {settings.db_path} (no server running)"
    if args.json:
        print(json.dumps({"live": live, "canary": canary, "canary_share": share, "data": rows}, indent=2,
                         default=str))
    else:
        print(format_versions(rows, live, canary, share))
        print(f"({source})")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    return _run(
        settings,
        lambda: call_api(settings, "POST", f"/admin/versions/{args.version}/promote", {"force": args.force}),
        lambda router: router.promote(args.version, by="cli", force=args.force),
        f"{args.version} is live" + (" (gate overridden)" if args.force else ""),
    )


def cmd_rollback(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    return _run(
        settings,
        lambda: call_api(settings, "POST", "/admin/rollback", {"version": args.version}),
        lambda router: router.rollback(args.version, by="cli"),
        f"rolled back: {args.version or 'the base model'} is live",
    )


def add_versions(subparsers: Any) -> None:
    parser = subparsers.add_parser("versions", help="list adapter versions and what is live / canary")
    add_cli_flags(parser)
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(func=cmd_versions)


def add_promote(subparsers: Any) -> None:
    parser = subparsers.add_parser("promote", help="make an adapter version live (its gate must have passed)")
    add_cli_flags(parser)
    parser.add_argument("version", help="version id, e.g. v0003")
    parser.add_argument("--force", action="store_true", help="promote even though its gate failed")
    parser.set_defaults(func=cmd_promote)


def add_rollback(subparsers: Any) -> None:
    parser = subparsers.add_parser("rollback", help="serve an earlier version, or the base model")
    add_cli_flags(parser)
    parser.add_argument("version", nargs="?", default=None, help="version id; omit for the base model")
    parser.set_defaults(func=cmd_rollback)


# Every sub-command this module contributes, in `--help` order. Training's `train` and `eval` go here too:
# define add_train / add_eval above and append them.
SUBCOMMANDS: list[Callable[[Any], None]] = [add_versions, add_promote, add_rollback]


def _training_subcommands() -> list[Callable[[Any], None]]:
    from training.cli_train import add_eval, add_train  # imports training.cli: load it lazily

    return [add_train, add_eval]


def register(subparsers: Any) -> None:
    """Called by assistant/cli.py with its sub-parsers."""
    for add in [*SUBCOMMANDS, *_training_subcommands()]:
        add(subparsers)
