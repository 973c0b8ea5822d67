"""Every plugin hook, in one place (pluggy). docs/plugins.md shows each one with an example.

A plugin is a module (or object) with functions named after these hooks and marked `@hookimpl`:

    from assistant.hookspecs import hookimpl

    @hookimpl
    def register_presets(register):
        register("tone", "pirate", "Talk like a pirate: say 'arr' and call the user 'matey'.")

It is found through the `assistant` entry-point group of an installed package (see
examples/assistant-plugin-example), or registered directly with `assistant.plugins.pm.register(module)`.
The shipped presets, the transformers and remote engines and the regression checks are plugins too
(assistant/builtin_plugins.py), so a plugin does exactly what the built-ins do.

Most hooks receive a `register` callable instead of returning values (the simonw/llm style): a plugin may
register several things, or none, and a mistake in one call is reported with the plugin's name.
"""

from __future__ import annotations

from typing import Any

from pluggy import HookimplMarker, HookspecMarker

hookspec = HookspecMarker("assistant")
hookimpl = HookimplMarker("assistant")


@hookspec
def register_model_backends(register: Any) -> None:
    """Add engines that answer chats: `register(name, factory)`.

    `factory(settings, model_dir, model_id)` returns a started engine with the public API of
    `assistant.engine.Engine` (submit → RequestHandle, load_version / set_live / retire, ...).
    `ASSISTANT_BACKEND=<name>` picks one; the built-ins are "transformers" (in-process torch) and
    "remote" (any OpenAI-compatible server at ASSISTANT_BACKEND_URL, e.g. vLLM with --enable-lora).
    """


@hookspec
def register_presets(register: Any) -> None:
    """Add controllability presets: `register(kind, name, instruction)`.

    `kind` is "tone", "format" or "safety"; `instruction` is the sentence added to the system prompt when
    a user picks `name` ("" adds nothing). A name registered again replaces the earlier one.
    """


@hookspec
def register_curation_filters(register: Any) -> None:
    """Add curation steps: `register(filter)`.

    A filter has a `name` and is called as `filter(items) -> (kept, dropped)`, each dropped entry being
    `{"item", "filter", "reason"}` (the `feedback.filters.Filter` protocol). Plugin filters run after the
    standard ones (dedupe, PII scrub, rater trust, ...), on every curation.
    """


@hookspec
def register_gate_evaluators(register: Any) -> None:
    """Add regression-check kinds for the promotion gate: `register(kind, check)`.

    `check(answer, check_dict) -> bool` says whether an answer passes an item of the regression suite whose
    `check` is `{"kind": kind, ...parameters}`. The shipped kinds (json, bullets, refuses, ...) come from
    training/regression_checks.py.
    """


@hookspec
def feedback_recorded(rating: dict[str, Any]) -> None:
    """Called after a rating is stored (API or UI), e.g. to forward it to another system.

    `rating` holds id, message_id, rater, rating, stars, tags, comment, correction. Listeners run off the
    request path; an exception is logged with the plugin's name and never reaches the user.
    """


@hookspec
def register_routes(app_ctx: Any) -> list[Any] | None:
    """Return FastAPI `APIRouter`s to mount on the server (same port as the API and the UI).

    `app_ctx` is the running `assistant.context.AppContext` (settings, engine, store, admin token); a
    route that changes anything should check the admin token (`app_ctx.extras["require_admin"]`).
    """
