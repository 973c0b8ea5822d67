"""The plugin manager: the built-ins first, then every installed plugin (entry-point group `assistant`).

    from assistant.plugins import get_presets, get_backends, list_plugins
    get_presets()["tone"]        # {"neutral": "", "friendly": "Use a warm ...", "pirate": ...}
    build_engine(settings, model_dir, model_id)   # the backend settings.backend names
    list_plugins()               # [{"name", "hooks", "error", ...}]; `python -m assistant plugins` prints it

A plugin that cannot be imported, or that implements a hook that does not exist, is logged with its name,
listed with its error and skipped: it never stops the server. An exception inside a plugin's hook is
handled the same way, for that hook call only. `ASSISTANT_LOAD_PLUGINS` limits which installed plugins
load: a comma-separated list of entry-point names, or empty for none (the built-ins always load).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pluggy

from . import builtin_plugins, hookspecs
from .errors import AssistantError
from .hookspecs import hookimpl

__all__ = [
    "ENTRY_POINT_GROUP",
    "PRESET_KINDS",
    "PluginError",
    "attach_plugins",
    "build_engine",
    "get_backends",
    "get_curation_filters",
    "get_gate_checks",
    "get_presets",
    "get_routes",
    "hookimpl",
    "list_plugins",
    "load_entrypoints",
    "notify_feedback",
    "pm",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "assistant"
BUILTIN = "builtin"
PRESET_KINDS = ("tone", "format", "safety")


class PluginError(AssistantError):
    """A plugin is missing or broken; the message names it and says what to do."""

    code = "plugin_error"


pm = pluggy.PluginManager("assistant")
pm.add_hookspecs(hookspecs)

_failed: dict[str, str] = {}  # entry-point name → why it is not loaded
_hook_errors: dict[str, dict[str, str]] = {}  # plugin name → {hook: last error raised in it}
_sources: dict[str, dict[str, str]] = {}  # plugin name → {"package", "version"} of its distribution
_lock = threading.Lock()


# ---------------------------------------------------------------------------- loading
def hook_names() -> list[str]:
    """The hooks a plugin can implement (hookspecs.py)."""
    return sorted(name for name, caller in vars(pm.hook).items() if getattr(caller, "spec", None) is not None)


def _check_hooks(plugin: Any) -> None:
    """A hookimpl without a spec is a typo that pluggy would only report later: refuse it now."""
    unknown = sorted(caller.name for caller in pm.get_hookcallers(plugin) or [] if caller.spec is None)
    if unknown:
        known = ", ".join(hook_names())
        raise PluginError(f"implements {', '.join(unknown)}, which {'is' if len(unknown) == 1 else 'are'} "
                          f"not an assistant hook (the hooks are: {known})")


def register(plugin: Any, name: str | None = None) -> str:
    """Register a plugin object or module (its hook names are checked); returns its name."""
    registered = pm.register(plugin, name=name)
    if registered is None:
        raise PluginError(f"plugin {name or plugin!r} is blocked and was not registered")
    try:
        _check_hooks(plugin)
    except PluginError:
        pm.unregister(plugin)
        raise
    return registered


def _wanted() -> set[str] | None:
    raw = os.environ.get("ASSISTANT_LOAD_PLUGINS")
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


def load_entrypoints(group: str = ENTRY_POINT_GROUP, only: set[str] | None = None) -> list[str]:
    """Load installed plugins one entry point at a time, so one broken plugin cannot stop the others.

    Returns the names loaded now; failures are logged and kept for `list_plugins()`.
    """
    loaded = []
    for entry_point in importlib.metadata.entry_points(group=group):
        name = entry_point.name
        if (only is not None and name not in only) or pm.get_plugin(name) is not None or pm.is_blocked(name):
            continue
        dist = entry_point.dist
        source = {"package": dist.metadata["Name"], "version": dist.version} if dist is not None else {}
        where = f"{entry_point.value}" + (f" from {source['package']} {source['version']}" if source else "")
        try:
            plugin = entry_point.load()
            register(plugin, name=name)
        except Exception as exc:  # any import-time error of third-party code: report it, keep serving
            message = f"{type(exc).__name__}: {exc}" if not isinstance(exc, PluginError) else str(exc)
            _failed[name] = message
            log.error("plugin %r (%s) is not loaded: %s", name, where, message)
            continue
        _failed.pop(name, None)
        _sources[name] = source
        loaded.append(name)
        log.info("loaded plugin %r (%s)", name, where)
    return loaded


# ---------------------------------------------------------------------------- calling hooks
def _hook_failed(plugin_name: str, hook: str, exc: BaseException) -> None:
    message = f"{type(exc).__name__}: {exc}"
    with _lock:
        errors = _hook_errors.setdefault(plugin_name, {})
        first = errors.get(hook) != message
        errors[hook] = message
    if first:  # hooks run on every request: log a failure once, not per call
        log.error("plugin %r failed in %s: %s", plugin_name, hook, message, exc_info=exc)


def _impls(hook: str) -> Iterator[Any]:
    """A hook's implementations in registration order (built-ins first, so later plugins override)."""
    caller = getattr(pm.hook, hook)
    yield from caller.get_hookimpls()


def _call_each(hook: str, **kwargs: Any) -> Iterator[tuple[str, Any]]:
    """(plugin name, result) for each implementation; one that raises is recorded and skipped."""
    for impl in _impls(hook):
        try:
            result = impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception as exc:
            _hook_failed(impl.plugin_name, hook, exc)
            continue
        yield impl.plugin_name, result


def _collect(hook: str, make_register: Callable[[str], Callable[..., None]]) -> None:
    """Call a `register_*` hook, giving each plugin a `register` that knows whose call it is."""
    for impl in _impls(hook):
        kwargs = {"register": make_register(impl.plugin_name)}
        try:
            impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception as exc:
            _hook_failed(impl.plugin_name, hook, exc)


def get_presets() -> dict[str, dict[str, str]]:
    """{"tone": {name: instruction}, "format": {...}, "safety": {...}}: the shipped ones, then plugins'."""
    tables: dict[str, dict[str, str]] = {kind: {} for kind in PRESET_KINDS}

    def make_register(plugin: str) -> Callable[..., None]:
        def register(kind: str, name: str, instruction: str) -> None:
            if kind not in tables:
                raise PluginError(f"preset kind must be one of {', '.join(PRESET_KINDS)}, got {kind!r}")
            if not isinstance(name, str) or not name.strip() or len(name) > 64:
                raise PluginError(f"a {kind} preset needs a name of 1 to 64 characters, got {name!r}")
            if not isinstance(instruction, str):
                raise PluginError(f"{kind} preset {name!r}: the instruction must be a string")
            tables[kind][name] = instruction.strip()

        return register

    _collect("register_presets", make_register)
    return tables


def get_backends() -> dict[str, Callable[..., Any]]:
    """Engine factories by name: factory(settings, model_dir, model_id) → a started engine."""
    backends: dict[str, Callable[..., Any]] = {}

    def make_register(plugin: str) -> Callable[..., None]:
        def register(name: str, factory: Callable[..., Any]) -> None:
            if not isinstance(name, str) or not name or not callable(factory):
                raise PluginError(f"register(name, factory) needs a name and a callable, got {name!r}")
            backends[name] = factory

        return register

    _collect("register_model_backends", make_register)
    return backends


def get_curation_filters() -> list[Any]:
    """Extra curation filters (objects with `name`, called as filter(items) → (kept, dropped))."""
    filters: list[Any] = []

    def make_register(plugin: str) -> Callable[..., None]:
        def register(curation_filter: Any) -> None:
            name = getattr(curation_filter, "name", None)
            if not isinstance(name, str) or not name or not callable(curation_filter):
                raise PluginError(
                    "a curation filter needs a string `name` and `__call__(items) -> (kept, dropped)`, "
                    f"got {curation_filter!r}"
                )
            filters.append(curation_filter)

        return register

    _collect("register_curation_filters", make_register)
    return filters


def get_gate_checks() -> dict[str, Callable[[str, dict[str, Any]], bool]]:
    """Regression-check kinds for the gate: the shipped CHECKS, then plugins'; kind → check(answer, dict)."""
    checks: dict[str, Callable[[str, dict[str, Any]], bool]] = {}

    def make_register(plugin: str) -> Callable[..., None]:
        def register(kind: str, check: Callable[[str, dict[str, Any]], bool]) -> None:
            if not isinstance(kind, str) or not kind or not callable(check):
                raise PluginError(f"register(kind, check) needs a kind name and a callable, got {kind!r}")
            checks[kind] = check

        return register

    _collect("register_gate_evaluators", make_register)
    return checks


def notify_feedback(rating: dict[str, Any]) -> None:
    """Tell every `feedback_recorded` listener; a listener that raises is logged, the others still run."""
    for _ in _call_each("feedback_recorded", rating=dict(rating)):
        pass


def get_routes(app_ctx: Any) -> list[Any]:
    """The APIRouters plugins contribute (checked to be routers; a bad return is reported, not mounted)."""
    routers: list[Any] = []
    for plugin, result in _call_each("register_routes", app_ctx=app_ctx):
        for router in result or []:
            if not hasattr(router, "routes"):
                _hook_failed(plugin, "register_routes", PluginError(f"returned {router!r}, not an APIRouter"))
                continue
            routers.append(router)
    return routers


def backend_name(settings: Any) -> str:
    """settings.backend, else "remote" when a backend URL is set, else the in-process "transformers"."""
    name = getattr(settings, "backend", None)
    if name:
        return str(name)
    return "remote" if getattr(settings, "backend_url", None) else "transformers"


def build_engine(settings: Any, model_dir: Any, model_id: str) -> Any:
    """Start the engine of the backend the settings choose (a plugin may add backends)."""
    name = backend_name(settings)
    backends = get_backends()
    if name not in backends:
        raise PluginError(
            f"no model backend named {name!r} (ASSISTANT_BACKEND); available: {', '.join(sorted(backends))}. "
            "Install the plugin that provides it; `python -m assistant plugins` lists what is loaded"
        )
    return backends[name](settings, model_dir, model_id)


# ---------------------------------------------------------------------------- the running app
_events: ThreadPoolExecutor | None = None


def _dispatch_feedback(rating: dict[str, Any]) -> None:
    """Run listeners on one background thread, in order: a slow forwarder never delays a request."""
    global _events
    if not pm.hook.feedback_recorded.get_hookimpls():
        return
    with _lock:
        if _events is None:
            _events = ThreadPoolExecutor(1, thread_name_prefix="plugin-events")
    _events.submit(notify_feedback, rating)


def _notify_on_ratings(store: Any) -> None:
    """Wrap the store's add_rating (API and UI both call it) so each stored rating reaches listeners."""
    if store is None or getattr(store.add_rating, "notifies_plugins", False):
        return
    original = store.add_rating

    def add_rating(**fields: Any) -> Any:
        rating_id = original(**fields)
        try:
            _dispatch_feedback({"id": rating_id, **fields, "tags": list(fields.get("tags") or ())})
        except Exception:  # the rating is stored; telling plugins must not turn that into an error
            log.exception("could not dispatch rating %s to plugins", rating_id)
        return rating_id

    add_rating.notifies_plugins = True  # type: ignore[attr-defined]
    try:
        store.add_rating = add_rating
    except AttributeError:  # a store that cannot be wrapped: ratings are kept, listeners are not told
        log.warning("feedback_recorded listeners are not called: %s cannot be wrapped", type(store).__name__)


def attach_plugins(ctx: Any) -> None:
    """Mount plugin routes and forward stored ratings to `feedback_recorded` listeners."""
    ctx.extras.setdefault("routers", []).extend(get_routes(ctx))
    _notify_on_ratings(ctx.store)
    ctx.extras["plugins"] = list_plugins(exercise=False)
    broken = [p["name"] for p in ctx.extras["plugins"] if p["error"]]
    if broken:
        log.warning("plugins with errors (see `python -m assistant plugins`): %s", ", ".join(broken))


# ---------------------------------------------------------------------------- listing
def list_plugins(exercise: bool = True) -> list[dict[str, Any]]:
    """Every plugin: {"name", "hooks", "error", "builtin", "package", "version"}; failed ones have no hooks.

    With `exercise`, the `register_*` hooks are called first so their errors show up here too.
    """
    if exercise:
        get_presets(), get_backends(), get_curation_filters(), get_gate_checks()
    listed = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda pair: (pair[0] != BUILTIN, pair[0])):
        if plugin is None:
            continue
        errors = _hook_errors.get(name) or {}
        listed.append({
            "name": name,
            "hooks": sorted(caller.name for caller in pm.get_hookcallers(plugin) or []),
            "error": "; ".join(f"{hook}: {message}" for hook, message in sorted(errors.items())) or None,
            "builtin": name == BUILTIN,
            **_sources.get(name, {}),
        })
    for name, message in sorted(_failed.items()):
        listed.append({"name": name, "hooks": [], "error": message, "builtin": False})
    return listed


register(builtin_plugins, name=BUILTIN)
load_entrypoints(only=_wanted())
