"""Command line: `python -m assistant serve|chat|export|...`. `make run` calls `serve`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .settings import Settings, add_cli_flags, settings_from_args


def cmd_serve(args: argparse.Namespace) -> int:
    import app

    try:
        app.serve(settings_from_args(args))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    """Stream one answer to the terminal, with the model loaded in this process."""
    from .engine import Engine, SamplingParams
    from .errors import AssistantError
    from .model import load_model, load_tokenizer, prepare_model_dir
    from .presets import Presets, compose_system_prompt

    settings = settings_from_args(args)
    try:
        model_dir, model_id = prepare_model_dir(settings.model_path, settings.data_dir)
        engine = Engine(
            load_model(model_dir, settings.dtype),
            load_tokenizer(model_dir),
            model_id=model_id,
            context_window=settings.context_window,
            max_tokens_limit=settings.max_tokens_limit,
        ).start()
    except AssistantError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    messages = [
        {"role": "system", "content": compose_system_prompt(args.system, Presets())},
        {"role": "user", "content": args.question},
    ]
    try:
        handle = engine.submit(
            messages, SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature)
        )
        for delta in handle:
            print(delta, end="", flush=True)
        print()
    except AssistantError as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.stop()
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    """Print the plugins as JSON; exit 1 when one failed to load or raised in a hook."""
    from .plugins import list_plugins

    listed = list_plugins()
    print(json.dumps(listed, indent=2))
    return 1 if any(p["error"] for p in listed) else 0


def _store(settings: Settings):  # type: ignore[no-untyped-def]
    from feedback.store import Store

    if not settings.db_path.is_file():
        print(
            f"error: no database at {settings.db_path}; start the server once or set ASSISTANT_DATA_DIR",
            file=sys.stderr,
        )
        raise SystemExit(2)
    return Store(settings.db_path)


def cmd_export(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    store = _store(settings)
    try:
        if args.what == "feedback":
            count = 0
            out = Path(args.out)
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(out.suffix + ".tmp")
            with tmp.open("w") as fh:
                offset = 0
                while True:
                    rows = store.list_feedback(limit=500, offset=offset)
                    if not rows:
                        break
                    for row in rows:
                        fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                    count += len(rows)
                    offset += len(rows)
            os.replace(tmp, out)
            print(f"wrote {count} ratings to {out}")
        else:
            from feedback.datasets import build_datasets

            manifest = build_datasets(store, settings, Path(args.out))
            print(json.dumps({k: manifest[k] for k in ("dataset_hash", "counts") if k in manifest}, indent=2))
    finally:
        store.close()
    return 0


def cmd_users(args: argparse.Namespace) -> int:
    """Accounts and their API keys. A key (and a generated password) is printed once: only hashes are kept."""
    import secrets

    from feedback import users
    from feedback.store import NotFoundError, ValidationError

    store = _store(settings_from_args(args))
    try:
        if args.users_command == "list":
            for row in users.list_users(store):
                key = "api key" if row["has_api_key"] else "no api key"
                print(f"{row['name']}\t{row['role']}\t{key}")
        elif args.users_command == "add":
            password = args.password or secrets.token_urlsafe(12)
            users.create_user(store, args.name, password, args.role)
            print(f"created {args.role} {args.name!r}")
            if not args.password:
                print(f"password: {password}")
            if not args.no_key:
                print(f"api key:  {users.new_api_key(store, args.name)}")
        elif args.revoke:
            had = users.revoke_api_key(store, args.name)
            print(f"revoked {args.name!r}'s api key" if had else f"{args.name!r} had no api key")
        else:
            print(f"api key: {users.new_api_key(store, args.name)}  (the old one, if any, no longer works)")
    except (ValidationError, NotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        store.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m assistant", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the UI + API server")
    add_cli_flags(serve)
    serve.add_argument(
        "--backend-url",
        help="generate on this OpenAI-compatible server, e.g. vLLM (ASSISTANT_BACKEND_URL; docs/scaling.md)",
    )
    serve.set_defaults(func=cmd_serve)

    plugins = sub.add_parser("plugins", help="list loaded plugins, their hooks, and any that failed")
    plugins.set_defaults(func=cmd_plugins)

    chat = sub.add_parser("chat", help="ask one question, stream the answer")
    add_cli_flags(chat)
    chat.add_argument("question")
    chat.add_argument("--system", default=None, help="system prompt")
    chat.add_argument("--max-tokens", type=int, default=256)
    chat.add_argument("--temperature", type=float, default=0.0)
    chat.set_defaults(func=cmd_chat)

    export = sub.add_parser("export", help="write feedback or curated datasets")
    add_cli_flags(export)
    export.add_argument("what", choices=["feedback", "datasets"])
    export.add_argument("--out", required=True, help="JSONL file (feedback) or directory (datasets)")
    export.set_defaults(func=cmd_export)

    users = sub.add_parser(
        "users", help="accounts and their API keys (keys let API callers rate as themselves)"
    )
    users_sub = users.add_subparsers(dest="users_command", required=True)
    users_add = users_sub.add_parser("add", help="create an account; prints its password and API key once")
    users_add.add_argument("name")
    users_add.add_argument("--role", choices=["user", "admin"], default="user")
    users_add.add_argument("--password", help="at least 8 characters (default: generated and printed)")
    users_add.add_argument("--no-key", action="store_true", help="no API key (the UI sign-in only)")
    users_key = users_sub.add_parser("key", help="a new API key for NAME (the old one stops working)")
    users_key.add_argument("name")
    users_key.add_argument("--revoke", action="store_true", help="remove NAME's key instead")
    users_list = users_sub.add_parser("list", help="accounts, roles and who has an API key")
    for leaf in (users_add, users_key, users_list):
        add_cli_flags(leaf)
        leaf.set_defaults(func=cmd_users)

    for register in _extra_commands():
        register(sub)
    return parser


def _extra_commands() -> list:  # type: ignore[type-arg]
    """Sub-commands contributed by training and the registry (train, eval, promote, rollback, ...)."""
    registered = []
    for module_name in ("training.cli",):
        try:
            module = __import__(module_name, fromlist=["register"])
        except ModuleNotFoundError:
            continue
        registered.append(module.register)
    return registered


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)
