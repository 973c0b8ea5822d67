"""Access control: admin controls are reachable only by admins, whatever door a caller knocks on.

- Gradio: every handler of the admin tabs (hidden tabs' handlers are endpoints too, FACTS.md) is called
  through `/gradio_api/queue/join` by fn_index, as an anonymous client, as a signed-in plain user, and with
  a forged "admin" session in the State slot → an error, no data. Named ones also through `/gradio_api/call`.
- REST: every route under /admin and the vLLM-style adapter routes, enumerated from the FastAPI app itself,
  without a token, with a wrong one, or with the right one in the wrong place → 401.
- Files: Gradio serves nothing from the data dir (database, admin token, adapters), by absolute or relative
  path, through any of its file routes.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.reliability.conftest import (
    admin_dependencies,
    carries_data,
    default_inputs,
    gradio_call,
    gradio_config,
    is_noop_update,
    new_session_hash,
    sign_in,
)
from tests.server import Server

FORGED_ADMIN = {"id": "forged", "user": "admin", "role": "admin", "conversations": []}


@pytest.fixture(scope="module")
def config(tiny_server: Server) -> dict[str, Any]:
    return gradio_config(tiny_server.base_url)


@pytest.fixture(scope="module")
def plain_user(tiny_server: Server) -> tuple[str, str]:
    """A signed-up user with the role 'user', written through a Store on the server's database."""
    from feedback.store import Store
    from feedback.users import create_user

    name, password = f"plain-{secrets.token_hex(4)}", "pw-" + secrets.token_urlsafe(12)
    with Store(tiny_server.db_path) as store:
        create_user(store, name, password, role="user")
    return name, password


def refused(message: dict[str, Any]) -> bool:
    return not carries_data(message)


# ------------------------------------------------------------------------------------------- Gradio
def test_admin_handlers_are_enumerated(config: dict[str, Any]) -> None:
    deps = admin_dependencies(config)
    names = {d.get("api_name") for d in deps}
    # Feedback refresh; Data refresh/export/approve/reject; Training tick/train/cancel; Models' 6 + thens.
    assert "feedback_refresh" in names and "tick" in names
    assert len(deps) >= 19, sorted(map(str, names))


def test_anonymous_client_is_refused_by_every_admin_handler(
    tiny_server: Server, config: dict[str, Any]
) -> None:
    for dep in admin_dependencies(config):
        session = new_session_hash()
        done = gradio_call(tiny_server.base_url, dep, default_inputs(config, dep), session)
        assert refused(done), (
            f"fn_index {dep['id']} ({dep.get('api_name')}) answered an anonymous client: {done}"
        )
        # A forged admin session in the State slot is ignored: the server keeps the session's state.
        forged = gradio_call(tiny_server.base_url, dep, default_inputs(config, dep, FORGED_ADMIN), session)
        assert refused(forged), f"fn_index {dep['id']} trusted a forged session: {forged}"


def test_signed_in_plain_user_is_refused_by_every_admin_handler(
    tiny_server: Server, config: dict[str, Any], plain_user: tuple[str, str]
) -> None:
    session = new_session_hash()
    status = sign_in(tiny_server.base_url, config, session, *plain_user)
    assert f"Signed in as **{plain_user[0]}** (user)" in status
    for dep in admin_dependencies(config):
        done = gradio_call(tiny_server.base_url, dep, default_inputs(config, dep), session)
        assert refused(done), f"fn_index {dep['id']} ({dep.get('api_name')}) answered a plain user: {done}"


# Handlers that only read (safe on the shared server), and one that must refuse empty input politely.
READ_ONLY = ("feedback_refresh", "data_view", "tick", "view")


def test_admin_is_answered_so_the_refusals_mean_something(
    tiny_server: Server, config: dict[str, Any]
) -> None:
    """The same calls with an admin's session get data; empty (None) inputs get a message, not a crash."""
    session = new_session_hash()
    sign_in(tiny_server.base_url, config, session, "admin", tiny_server.admin_password)
    deps = {d.get("api_name"): d for d in admin_dependencies(config)}
    for name in READ_ONLY:
        done = gradio_call(tiny_server.base_url, deps[name], default_inputs(config, deps[name]), session)
        assert done["success"] and carries_data(done), (name, done)
    for name in ("data_approve", "data_reject"):  # with no ids
        done = gradio_call(tiny_server.base_url, deps[name], default_inputs(config, deps[name]), session)
        assert not done["success"] and "List the item ids" in done["output"]["error"], (name, done)


def test_named_admin_endpoints_refuse_the_call_api(tiny_server: Server, config: dict[str, Any]) -> None:
    """The other door: `POST /gradio_api/call/<api_name>` then `GET .../<event_id>` (gradio_client's)."""
    with httpx.Client(base_url=tiny_server.base_url, timeout=60) as http:
        for dep in admin_dependencies(config):
            if not dep.get("api_name") or dep.get("api_visibility") == "private":
                continue
            posted = http.post(
                f"/gradio_api/call/{dep['api_name']}",
                json={"data": default_inputs(config, dep, FORGED_ADMIN)},
            )
            if posted.status_code != 200:
                assert posted.status_code < 500, posted.text
                continue
            event_id = posted.json()["event_id"]
            body = http.get(f"/gradio_api/call/{dep['api_name']}/{event_id}").text
            events = [
                line.split(":", 1)[1].strip() for line in body.splitlines() if line.startswith("event:")
            ]
            assert "error" in events or _only_skips(body), f"{dep['api_name']}: {body[:500]}"


def _only_skips(sse_body: str) -> bool:
    import json

    for line in sse_body.splitlines():
        payload = line[5:].strip() if line.startswith("data:") else ""
        if payload not in ("null", "") and not all(is_noop_update(v) for v in json.loads(payload) or []):
            return False
    return True


# ------------------------------------------------------------------------------------------- REST
def walk_routes(routes: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, included routers too (FastAPI keeps them as lazy branches)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            context = getattr(route, "include_context", None)
            yield from walk_routes(included.routes, prefix + (getattr(context, "prefix", "") or ""))
            continue
        for method in getattr(route, "methods", None) or ():
            yield method, prefix + getattr(route, "path", "")


def admin_routes() -> list[tuple[str, str]]:
    """(method, path) of every admin route, read from the app the server builds (no model loaded)."""
    import tempfile

    from app import build_app, build_context
    from assistant.settings import Settings
    from tests.conftest import SHARED

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data",
            model_path=str(SHARED / "tiny-llama"),
            admin_token="t" * 32,
            admin_password="pw-enumerate-routes",
        )
        ctx = build_context(settings, load_engine=False)
        try:
            app = build_app(ctx)
            routes = []
            for method, path in walk_routes(app.routes):
                admin = path.startswith("/admin") or path in (
                    "/v1/load_lora_adapter",
                    "/v1/unload_lora_adapter",
                )
                if admin and method not in ("HEAD", "OPTIONS"):
                    routes.append((method, path))
        finally:
            training = ctx.extras.get("training")
            if training is not None:
                training.stop_watcher()
            ctx.store.close()
    return sorted(set(routes))


@pytest.fixture(scope="module")
def routes() -> list[tuple[str, str]]:
    return admin_routes()


BODIES = [
    None,
    {},
    {
        "force": True,
        "share": 0.5,
        "version": "v0001",
        "lora_name": "v0001",
        "lora_path": "/tmp",
        "config": {"sft": {"max_steps": 1}},
    },
    "not json",
]


def test_admin_routes_are_enumerated(tiny_server: Server, routes: list[tuple[str, str]]) -> None:
    paths = {p for _, p in routes}
    assert {
        "/admin/feedback",
        "/admin/versions",
        "/admin/rollback",
        "/admin/train",
        "/v1/load_lora_adapter",
        "/v1/unload_lora_adapter",
    } <= paths
    # The server's OpenAPI lists the same admin routes: nothing is hidden from this test.
    served = httpx.get(f"{tiny_server.base_url}/openapi.json", timeout=30).json()["paths"]
    listed = {
        (m.upper(), p) for p, ops in served.items() for m in ops if p.startswith("/admin") or p in paths
    }
    assert listed == set(routes)


@pytest.fixture(scope="module")
def http(tiny_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=tiny_server.base_url, timeout=30) as client:
        yield client


def bad_credentials(token: str) -> list[dict[str, str]]:
    import base64

    return [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer x y"},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {token[:-1]}"},
        {"Authorization": f"Bearer {token}x"},
        {"Authorization": f"Bearer {token.upper() if token != token.upper() else token.lower()}"},
        {"Authorization": f"Token {token}"},
        {"Authorization": f"Basic {base64.b64encode(f'admin:{token}'.encode()).decode()}"},
        {"X-Admin-Token": token},
        {"Cookie": f"token={token}"},
    ]


def test_every_admin_route_needs_the_token(
    http: httpx.Client, tiny_server: Server, routes: list[tuple[str, str]]
) -> None:
    for method, path in routes:
        check_route_refuses(http, tiny_server, method, path)


def check_route_refuses(http: httpx.Client, tiny_server: Server, method: str, path: str) -> None:
    url = path.replace("{version}", "v0001").replace("{job_id}", "job_x")
    for headers in bad_credentials(tiny_server.admin_token):
        for body in BODIES if method == "POST" else [None]:
            kwargs: dict[str, Any] = {"headers": headers}
            if isinstance(body, str):
                kwargs["content"] = body
                kwargs["headers"] = {**headers, "content-type": "application/json"}
            elif body is not None:
                kwargs["json"] = body
            response = http.request(method, url, params={"token": tiny_server.admin_token}, **kwargs)
            if isinstance(body, str):
                # FastAPI decodes a JSON body before it runs dependencies: malformed JSON is a 422 that
                # says only that (SECURITY.md); a body that parses meets the token check first.
                assert response.status_code in (401, 422), (method, url, response.text[:300])
                assert set(response.json()) == {"error"}, response.text[:300]
                continue
            assert response.status_code == 401, (method, url, headers, body, response.text[:300])
            assert response.json()["error"]["code"] == "unauthorized"
            assert set(response.json()) == {"error"}


def test_right_token_is_accepted(http: httpx.Client, tiny_server: Server) -> None:
    response = http.get("/admin/versions", headers=tiny_server.admin_headers())
    assert response.status_code == 200


# ------------------------------------------------------------------------------------------- files
def plant_secrets(server: Server) -> dict[str, bytes]:
    """Files under the data dir with recognisable content: the database, the token, an adapter file."""
    marker = secrets.token_hex(16).encode()
    adapter = server.data_dir / "adapters" / "v9999"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_bytes(b'{"marker": "' + marker + b'"}')
    (server.data_dir / "admin-token").write_text(server.admin_token + "\n")  # as a token-less start writes it
    return {
        "assistant.db": b"SQLite format 3",
        "admin-token": server.admin_token.encode(),
        "adapters/v9999/adapter_config.json": marker,
    }


def file_urls(data_dir: Path, relative: str, name: str) -> list[str]:
    absolute = f"{data_dir}/{name}"
    variants = [
        absolute,
        quote(absolute, safe=""),
        f"{data_dir}/./{name}",
        f"{data_dir}/../{data_dir.name}/{name}",
        f"{relative}/{name}",
        f"./{relative}/{name}",
        quote(f"{relative}/{name}", safe=""),
    ]
    urls = []
    for v in variants:
        urls += [f"/gradio_api/file={v}", f"/file={v}", f"/gradio_api/file/{v.lstrip('/')}"]
    return urls


def assert_nothing_served(server: Server, relative: str) -> None:
    planted = plant_secrets(server)
    with httpx.Client(base_url=server.base_url, timeout=30, follow_redirects=True) as http:
        for name, content in planted.items():
            for url in file_urls(server.data_dir, relative, name):
                response = http.get(url)
                assert not (response.status_code == 200 and content in response.content), (
                    url,
                    response.status_code,
                )
                assert response.status_code < 500, (url, response.status_code, response.text[:200])


def test_gradio_serves_no_file_from_the_data_dir(tiny_server: Server) -> None:
    assert_nothing_served(tiny_server, "data")


def test_gradio_serves_no_file_from_a_relative_data_dir(limits_server: Server) -> None:
    """The default layout: `./data` under the server's working directory."""
    assert_nothing_served(limits_server, "data")


# ------------------------------------------------------------------------------------------- headers
@pytest.mark.parametrize("path", ["/", "/v1/models", "/health", "/gradio_api/info", "/no-such-page"])
def test_every_response_carries_the_security_headers(tiny_server: Server, path: str) -> None:
    """A CSP that forbids other origins' scripts, plugins and framing, on the UI, the API and errors."""
    response = httpx.get(tiny_server.base_url + path, timeout=30)
    csp = response.headers.get("content-security-policy", "")
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives.get("frame-ancestors") == "'none'", csp
    assert directives.get("object-src") == "'none'", csp
    assert "http" not in directives.get("script-src", "http") and "*" not in csp, csp
    # Markdown images in an answer must not reach other origins (a prompt-injected exfiltration URL).
    assert "http" not in directives.get("img-src", "http"), csp
    assert response.headers.get("x-content-type-options") == "nosniff"
    assert response.headers.get("x-frame-options") == "DENY"
