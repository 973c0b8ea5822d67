"""The chat tab: streaming chat with controls, and rating of every answer.

Handlers are plain top-level functions taking the AppContext first (testable without a browser); the
Blocks wiring is in `build_chat_tab` at the end. Message ids travel in `metadata["id"]` (the only
metadata key Gradio keeps besides title/status/...); since they come back from the browser, every
handler checks that the message belongs to the caller's conversation before using it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import gradio as gr

from ..chat import start_turn
from ..context import AppContext
from ..engine import BASE, SamplingParams
from ..errors import AssistantError
from ..presets import FORMATS, SAFETY, TONES, Presets, compose_system_prompt
from .session import new_session, require_signed_in, session_origin, session_rater

log = logging.getLogger(__name__)

TAG_CHOICES = [
    ("made up / hallucination", "hallucination"),
    ("too cautious / refused", "too_cautious"),
    ("wrong format", "wrong_format"),
    ("wrong tone", "wrong_tone"),
    ("unsafe", "unsafe"),
    ("off-topic", "off_topic"),
    ("other", "other"),
]


def text_of(content: Any) -> str:
    """Gradio gives message content as a string or a list of parts; we want the text."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") if isinstance(p, dict) else str(p) for p in content)
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return "" if content is None else str(content)


def to_model_messages(history: list[dict[str, Any]], system_prompt: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}]
    for message in history:
        if message.get("role") in ("user", "assistant"):
            messages.append({"role": message["role"], "content": text_of(message.get("content"))})
    return messages


def version_label(version: str) -> str:
    return "base model" if version in (BASE, None) else f"version {version}"


def owned_message(ctx: AppContext, session: dict[str, Any], message_id: str | None) -> dict[str, Any]:
    """The stored assistant message `message_id`, if it belongs to this session's conversations."""
    if not message_id:
        raise gr.Error("Pick an answer first: click one in the chat.")
    message = ctx.store.get_message(message_id)
    if (
        message is None
        or message.get("role") != "assistant"
        or message.get("conversation_id") not in session.get("conversations", [])
    ):
        raise gr.Error("That answer is not part of this conversation.")
    return message


# ------------------------------------------------------------------------------------- chat
# Two answers sampled from one version at temperature 0 would be the same answer twice.
COMPARE_MIN_TEMPERATURE = 0.3


def turn_settings(
    ctx: AppContext,
    system_prompt: str,
    tone: str,
    fmt: str,
    safety: str,
    say_idk: bool,
    temperature: float,
    top_p: float,
    max_tokens: int,
) -> tuple[Presets, str, SamplingParams]:
    """What the side panel's controls ask for: (presets, the composed system prompt, sampling params).

    One place for the chat and for compare mode, so both answer with the settings the user chose.
    """
    try:
        presets = Presets(tone=tone, format=fmt, safety=safety, say_idk=bool(say_idk))
    except ValueError as exc:
        raise gr.Error(str(exc)) from None
    try:
        params = SamplingParams(
            max_tokens=ctx.engine.clamp_max_tokens(int(max_tokens)),
            temperature=float(temperature),
            top_p=float(top_p),
        )
    except AssistantError as exc:
        raise gr.Error(str(exc)) from None
    return presets, compose_system_prompt(system_prompt, presets), params


def chat_turn(
    ctx: AppContext,
    message: str,
    history: list[dict[str, Any]],
    session: dict[str, Any],
    system_prompt: str,
    tone: str,
    fmt: str,
    safety: str,
    say_idk: bool,
    temperature: float,
    top_p: float,
    max_tokens: int,
    regenerate_of: str | None = None,
) -> Iterator[tuple[list[dict[str, Any]], dict[str, Any], str]]:
    """Stream one answer into the chat; yields (history, session, status line)."""
    require_signed_in(ctx, session)
    message = (message or "").strip()
    if not message:
        raise gr.Error("Type a message first.")
    presets, system, params = turn_settings(
        ctx, system_prompt, tone, fmt, safety, say_idk, temperature, top_p, max_tokens
    )
    model_messages = to_model_messages(history, system)
    model_messages.append({"role": "user", "content": message})
    try:
        user_message_id = session.get("last_user_message_id") if regenerate_of else None
        turn = start_turn(
            ctx,
            model_messages,
            params,
            owner=session_rater(session),
            source="ui",
            conversation_id=session.get("conversation_id"),
            presets=presets,
            user_message_id=user_message_id,
        )
    except AssistantError as exc:
        raise gr.Error(str(exc)) from None
    session = dict(session)
    session["conversation_id"] = turn.conversation_id
    session["conversations"] = [*session.get("conversations", []), turn.conversation_id][-50:]
    session["last_user_message_id"] = turn.user_message_id
    session["selected"] = turn.message_id
    if regenerate_of:
        session["regenerated"] = {"previous": regenerate_of, "new": turn.message_id}
    history = [*history, {"role": "user", "content": message}]
    answer: dict[str, Any] = {"role": "assistant", "content": "", "metadata": {"id": turn.message_id}}
    deltas = turn.deltas(ctx.settings.request_timeout_s)
    try:
        for delta in deltas:
            answer["content"] += delta
            yield [*history, answer], session, f"*{version_label(turn.version)} · generating…*"
    except AssistantError as exc:
        raise gr.Error(str(exc)) from None
    finally:
        deltas.close()  # Stop / disconnect: cancels the request, stores what was said
    result = turn.handle.result
    answer["content"] = result.text
    seconds = result.latency_ms / 1000
    tokens = result.completion_tokens
    status = f"{ctx.model_id} · {version_label(turn.version)} · {tokens} tokens in {seconds:.1f} s"
    yield [*history, answer], session, status


def last_user_text(history: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]], str | None]:
    """For Regenerate: the last user message, the history before it, and the answer it replaces."""
    for i in range(len(history) - 1, -1, -1):
        if history[i].get("role") == "user":
            replaced = None
            for later in history[i + 1 :]:
                replaced = (later.get("metadata") or {}).get("id") or replaced
            return text_of(history[i].get("content")), history[:i], replaced
    raise gr.Error("Nothing to regenerate yet.")


# ------------------------------------------------------------------------------------- rating
def rate_answer(
    ctx: AppContext,
    session: dict[str, Any],
    rating: str | None,
    stars: int | None,
    tags: list[str] | None,
    comment: str | None,
    correction: str | None = None,
    request: gr.Request | None = None,
) -> str:
    require_signed_in(ctx, session)
    message = owned_message(ctx, session, session.get("selected"))
    rater = session_rater(session)
    # The newest rating is the rater's whole current verdict: a 👍 then a stars-only save must keep the 👍,
    # so fields this action does not set are carried over from the current rating.
    current = ctx.store.current_rating(message["id"], rater) or {}
    try:
        ctx.store.add_rating(
            message_id=message["id"],
            rater=rater,
            rating=rating or current.get("rating"),
            stars=int(stars) if stars else current.get("stars"),
            tags=tuple(tags or current.get("tags") or ()),
            comment=(comment or "").strip() or current.get("comment"),
            correction=(correction or "").strip() or None,
            origin=session_origin(session, request),
        )
    except (ValueError, LookupError) as exc:
        raise gr.Error(str(exc)) from None
    return f"Saved your rating of the answer by {version_label(message.get('adapter_version') or BASE)}."


def message_id_at(history: list[dict[str, Any]] | None, index: Any) -> str | None:
    """The id of the answer at `index` of the chat history (what like/select events point at)."""
    if isinstance(index, (list, tuple)):
        index = index[0] if index else None
    if not isinstance(index, int) or not history or not 0 <= index < len(history):
        return None
    message = history[index]
    if not isinstance(message, dict) or message.get("role") != "assistant":
        return None
    return (message.get("metadata") or {}).get("id")


def event_message_id(data: gr.EventData, history: list[dict[str, Any]] | None) -> str | None:
    """Gradio's like/select events carry the message's index and content, not the message: look it up."""
    value = getattr(data, "value", None)
    if isinstance(value, dict) and (value.get("metadata") or {}).get("id"):
        return value["metadata"]["id"]
    return message_id_at(history, getattr(data, "index", None))


def on_like(
    ctx: AppContext,
    session: dict[str, Any],
    data: gr.LikeData,
    history: list[dict[str, Any]] | None = None,
    request: gr.Request | None = None,
) -> tuple[dict[str, Any], str]:
    """👍/👎 on a chat bubble. `liked == ""` means the user took the vote back."""
    message_id = event_message_id(data, history)
    session = dict(session)
    if message_id:
        session["selected"] = message_id
    if data.liked is True or data.liked is False:
        verdict = "up" if data.liked is True else "down"
        return session, rate_answer(ctx, session, verdict, None, None, None, request=request)
    return session, "Vote removed from view (your earlier vote stays in the history)."


def on_select(
    session: dict[str, Any], data: gr.SelectData, history: list[dict[str, Any]] | None = None
) -> tuple[dict[str, Any], str]:
    message_id = event_message_id(data, history)
    if not message_id:
        return session, "Select an answer (not your own message) to rate it."
    return {**session, "selected": message_id}, f"Selected answer `{message_id}` for rating."


def describe_selected(ctx: AppContext, session: dict[str, Any], status: str) -> str:
    """Which model version wrote the selected answer: every answer's version is one click away."""
    message = ctx.store.get_message(session.get("selected") or "")
    if message is None or message.get("conversation_id") not in session.get("conversations", []):
        return status
    tokens = message.get("completion_tokens") or 0
    version = version_label(message.get("adapter_version") or BASE)
    return f"{status} Written by {ctx.model_id} · {version} · {tokens} tokens."


def on_edit(
    ctx: AppContext,
    session: dict[str, Any],
    history: list[dict[str, Any]],
    data: gr.EditData,
    request: gr.Request | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any], str]:
    """A user's rewrite of an answer is a correction: stored as a new row, the original is kept."""
    index = data.index if isinstance(data.index, int) else data.index[0]
    message = history[index] if 0 <= index < len(history) else {}
    message_id = (message.get("metadata") or {}).get("id")
    if message.get("role") != "assistant" or not message_id:
        raise gr.Error("Only answers can be corrected; edit the answer you want to improve.")
    session = {**session, "selected": message_id}
    status = rate_answer(
        ctx, session, None, None, None, None, correction=text_of(data.value), request=request
    )
    return history, session, status + " Your correction will teach the next version."


def compare_regenerated(
    ctx: AppContext, session: dict[str, Any], winner: str, request: gr.Request | None = None
) -> tuple[dict[str, Any], str]:
    require_signed_in(ctx, session)
    pair = session.get("regenerated")
    if not pair:
        raise gr.Error("Regenerate an answer first, then say which one is better.")
    for message_id in (pair["previous"], pair["new"]):
        owned_message(ctx, session, message_id)
    ctx.store.add_comparison(
        message_a=pair["previous"],
        message_b=pair["new"],
        winner=winner,
        rater=session_rater(session),
        origin=session_origin(session, request),
    )
    return {**session, "regenerated": None}, "Thanks: your comparison was saved."


# ------------------------------------------------------------------------------------- compare mode
def compare_answers(
    ctx: AppContext,
    prompt: str,
    session: dict[str, Any],
    system_prompt: str,
    tone: str,
    fmt: str,
    safety: str,
    say_idk: bool,
    temperature: float,
    top_p: float,
    max_tokens: int,
) -> tuple[str, str, dict[str, Any], str]:
    """The same prompt answered twice (live vs canary when one exists, else two samples), with the chat's
    settings: system prompt, presets and sampling (`turn_settings`)."""
    require_signed_in(ctx, session)
    prompt = (prompt or "").strip()
    if not prompt:
        raise gr.Error("Type a prompt to compare answers.")
    presets, system, params = turn_settings(
        ctx, system_prompt, tone, fmt, safety, say_idk, temperature, top_p, max_tokens
    )
    router = ctx.extras.get("router")
    versions: list[str | None] = [None, None]
    if router is not None and getattr(router, "canary_version", None):
        versions = [ctx.engine.live_version, router.canary_version]
    note = ""
    if versions[0] == versions[1] and params.temperature < COMPARE_MIN_TEMPERATURE:
        # Two samples of one version: greedy decoding would answer the same twice.
        params = replace(params, temperature=COMPARE_MIN_TEMPERATURE)
        note = f" (temperature raised to {COMPARE_MIN_TEMPERATURE} so the two samples can differ)"
    messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    session = dict(session)
    try:
        first = start_turn(
            ctx,
            messages,
            params,
            owner=session_rater(session),
            source="compare",
            conversation_id=None,
            presets=presets,
            version=versions[0],
        )
        second = start_turn(
            ctx,
            messages,
            replace(params),
            owner=session_rater(session),
            source="compare",
            conversation_id=first.conversation_id,
            presets=presets,
            version=versions[1],
            user_message_id=first.user_message_id,
        )
        texts = [first.text(ctx.settings.request_timeout_s), second.text(ctx.settings.request_timeout_s)]
    except AssistantError as exc:
        raise gr.Error(str(exc)) from None
    session["conversations"] = [*session.get("conversations", []), first.conversation_id][-50:]
    session["compare"] = [first.message_id, second.message_id]
    return (
        texts[0],
        texts[1],
        session,
        f"A: {version_label(first.version)} · B: {version_label(second.version)}{note}. Which is better?",
    )


def vote_compare(
    ctx: AppContext, session: dict[str, Any], winner: str, request: gr.Request | None = None
) -> tuple[dict[str, Any], str]:
    require_signed_in(ctx, session)
    pair = session.get("compare")
    if not pair:
        raise gr.Error("Ask for two answers first.")
    for message_id in pair:
        owned_message(ctx, session, message_id)
    ctx.store.add_comparison(
        message_a=pair[0],
        message_b=pair[1],
        winner=winner,
        rater=session_rater(session),
        origin=session_origin(session, request),
    )
    return {**session, "compare": None}, f"Vote saved: {winner.replace('_', ' ')}."


# ------------------------------------------------------------------------------------- wiring
def build_chat_tab(ctx: AppContext, session_state: gr.State) -> None:
    settings = ctx.settings
    with gr.Row():
        with gr.Column(scale=3):
            chatbot = gr.Chatbot(
                label="Chat",
                height=460,
                editable="all",
                sanitize_html=True,
                allow_tags=False,
                buttons=["copy"],
                placeholder="Ask anything. Rate answers with 👍/👎, or edit one to suggest a better answer.",
            )
            with gr.Row():
                box = gr.Textbox(
                    placeholder="Message",
                    show_label=False,
                    scale=5,
                    max_length=settings.max_message_chars,
                    elem_id="chat-input",
                )
                send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                stop = gr.Button("Stop", scale=1, elem_id="stop")
            with gr.Row():
                regenerate = gr.Button("Regenerate", size="sm", elem_id="regenerate")
                new_chat = gr.Button("New conversation", size="sm", elem_id="new-chat")
            status = gr.Markdown("", elem_id="chat-status")
            with gr.Row():
                gr.Markdown("After a regenerate, which answer was better?")
                prev_better = gr.Button("Previous", size="sm")
                new_better = gr.Button("New", size="sm")
                same = gr.Button("Same", size="sm")
            with gr.Accordion("Rate the selected answer", open=False, elem_id="rating-panel"):
                with gr.Row():
                    thumbs = gr.Radio([("👍", "up"), ("👎", "down")], label="Verdict", value=None)
                    stars = gr.Radio([1, 2, 3, 4, 5], label="Stars", value=None)
                tags = gr.CheckboxGroup(TAG_CHOICES, label="Reasons")
                comment = gr.Textbox(label="Comment", max_length=4000, lines=2)
                correction = gr.Textbox(label="Suggest a better answer", max_length=16000, lines=3)
                rate = gr.Button("Save rating", variant="primary", elem_id="save-rating")
        with gr.Column(scale=1):
            system_prompt = gr.Textbox(
                label="System prompt", placeholder="You are a helpful assistant.", lines=3, max_length=4000
            )
            tone = gr.Dropdown(list(TONES), value="neutral", label="Tone")
            fmt = gr.Dropdown(list(FORMATS), value="free", label="Format")
            safety = gr.Dropdown(list(SAFETY), value="standard", label="Safety")
            say_idk = gr.Checkbox(value=True, label='Say "I don\'t know" when unsure')
            with gr.Accordion("Sampling", open=False):
                temperature = gr.Slider(0.0, 2.0, value=0.7, step=0.05, label="Temperature")
                top_p = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Top p")
                # Steps of 16 up to the limit; a limit of 16 or less (a small deployment) steps by 1.
                small = settings.max_tokens_limit <= 16
                max_tokens = gr.Slider(
                    1 if small else 16,
                    max(2, settings.max_tokens_limit),
                    value=settings.default_max_tokens,
                    step=1 if small else 16,
                    label="Max tokens",
                )
    with gr.Accordion("Compare two answers", open=False, elem_id="compare-panel"):
        compare_prompt = gr.Textbox(
            label="Prompt", max_length=settings.max_message_chars, elem_id="compare-prompt"
        )
        compare_go = gr.Button("Answer twice", elem_id="compare-go")
        with gr.Row():
            # gr.Markdown never shows its `label`: without these headings the two answers were unlabelled,
            # and "A is better" did not say which one A was.
            with gr.Column(elem_id="side-a"):
                gr.Markdown("**A**")
                answer_a = gr.Markdown(elem_id="answer-a")
            with gr.Column(elem_id="side-b"):
                gr.Markdown("**B**")
                answer_b = gr.Markdown(elem_id="answer-b")
        compare_status = gr.Markdown("", elem_id="compare-status")
        with gr.Row():
            vote_buttons = {
                w: gr.Button(label, size="sm", elem_id=f"vote-{w.replace('_', '-')}")
                for w, label in (
                    ("a", "A is better"),
                    ("b", "B is better"),
                    ("tie", "Tie"),
                    ("both_bad", "Both bad"),
                )
            }
    controls = [system_prompt, tone, fmt, safety, say_idk, temperature, top_p, max_tokens]

    def respond(message: str, history: list, session: dict, *rest: Any) -> Iterator[Any]:
        for out in chat_turn(ctx, message, history, session, *rest):
            yield "", *out

    def regen(history: list, session: dict, *rest: Any) -> Iterator[Any]:
        message, before, replaced = last_user_text(history)
        yield from chat_turn(ctx, message, before, session, *rest, regenerate_of=replaced)  # type: ignore[misc]

    outputs = [box, chatbot, session_state, status]
    events = [
        box.submit(
            respond,
            [box, chatbot, session_state, *controls],
            outputs,
            concurrency_limit=None,
            api_name="chat",
        ),
        send.click(respond, [box, chatbot, session_state, *controls], outputs, concurrency_limit=None),
        regenerate.click(
            regen,
            [chatbot, session_state, *controls],
            [chatbot, session_state, status],
            concurrency_limit=None,
        ),
    ]
    events.append(
        chatbot.retry(
            regen,
            [chatbot, session_state, *controls],
            [chatbot, session_state, status],
            concurrency_limit=None,
        )
    )
    stop.click(None, cancels=events)  # type: ignore[arg-type]

    def fresh(session: dict) -> tuple[list, dict, str]:
        return (
            [],
            {**session, "conversation_id": None, "selected": None, "regenerated": None},
            "New conversation.",
        )

    new_chat.click(
        fresh,
        [session_state],
        [chatbot, session_state, status],
        cancels=events,  # type: ignore[arg-type]
    )

    # Gradio passes event data (and the request: the rating's origin) only to parameters annotated with its
    # type: no bare lambdas here.
    def like(session: dict, history: list, data: gr.LikeData, request: gr.Request) -> tuple[dict, str]:
        return on_like(ctx, session, data, history, request)

    def select(session: dict, history: list, data: gr.SelectData) -> tuple[dict, str]:
        session, status = on_select(session, data, history)
        return session, describe_selected(ctx, session, status)

    def edit(session: dict, history: list, data: gr.EditData, request: gr.Request) -> tuple[list, dict, str]:
        return on_edit(ctx, session, history, data, request)

    def rate_selected(
        session: dict,
        thumbs_: str | None,
        stars_: int | None,
        tags_: list[str] | None,
        comment_: str | None,
        correction_: str | None,
        request: gr.Request,
    ) -> str:
        return rate_answer(ctx, session, thumbs_, stars_, tags_, comment_, correction_, request)

    chatbot.like(like, [session_state, chatbot], [session_state, status], api_name="like")
    chatbot.select(select, [session_state, chatbot], [session_state, status], api_name="select")
    chatbot.edit(edit, [session_state, chatbot], [chatbot, session_state, status], api_name="edit")
    rate.click(
        rate_selected,
        [session_state, thumbs, stars, tags, comment, correction],
        [status],
        api_name="rate",
    )

    def regenerated_vote(winner: str) -> Any:
        def vote(session: dict, request: gr.Request) -> tuple[dict, str]:
            return compare_regenerated(ctx, session, winner, request)

        return vote

    def compare_vote(winner: str) -> Any:
        def vote(session: dict, request: gr.Request) -> tuple[dict, str]:
            return vote_compare(ctx, session, winner, request)

        return vote

    for button, winner in ((prev_better, "a"), (new_better, "b"), (same, "tie")):
        button.click(regenerated_vote(winner), [session_state], [session_state, status])

    def compare(prompt: str, session: dict, *rest: Any) -> tuple[str, str, dict, str]:
        return compare_answers(ctx, prompt, session, *rest)

    compare_go.click(
        compare,
        [compare_prompt, session_state, *controls],
        [answer_a, answer_b, session_state, compare_status],
        concurrency_limit=None,
        api_name="compare",
    )
    for winner, button in vote_buttons.items():
        button.click(compare_vote(winner), [session_state], [session_state, compare_status])


__all__ = ["build_chat_tab", "chat_turn", "new_session", "rate_answer"]
