"""The fake OpenAI Responses API (``POST /v1/responses``) behind ``aroutd mock-upstream``.

Shaped like OpenAI's: a ``response`` object, or with ``"stream": true`` the real event
sequence (created, in_progress, output item and content part added, one text delta per
word, the matching done events, completed), each its own SSE event with a
``sequence_number``. Usage follows the rules of :mod:`aroutd.mock.providers`
(prompt = characters of ``input`` and ``instructions`` // 4 + 1). No I/O here.
"""

from __future__ import annotations

from aroutd.mock.providers import (
    COMPLETION_TOKENS,
    Json,
    MockResponse,
    json_response,
    object_list,
    prompt_tokens,
    reply_words,
    request_id,
    sse_event,
    sse_response,
    string_field,
    text_chars,
)

__all__ = ["openai_responses"]


def _responses_prompt(body: Json) -> tuple[int, int]:
    """(prompt tokens, number of input items) of a Responses API body: ``input`` is a string
    (one user message) or an array of items; ``instructions`` count as text, not as an item."""
    value = body.get("input")
    items = [{"content": value}] if isinstance(value, str) else object_list(body, "input")
    chars = text_chars(body.get("instructions")) + sum(text_chars(i.get("content")) for i in items)
    return prompt_tokens(chars), len(items)


def _responses_usage(prompt: int) -> Json:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": COMPLETION_TOKENS,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + COMPLETION_TOKENS,
    }


def _responses_events(done: Json, words: list[str]) -> list[bytes]:
    """The stream that ends in ``done``: response.created and .in_progress (no output and no
    usage yet), its one message item and text part opened, one output_text.delta per word,
    both closed again, then response.completed carrying ``done`` with its usage."""
    message = done["output"][0]
    part = message["content"][0]
    running = {**done, "status": "in_progress", "completed_at": None, "output": [], "usage": None}
    at = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    opened = {**message, "status": "in_progress", "content": []}
    events: list[Json] = [
        {"type": "response.created", "response": running},
        {"type": "response.in_progress", "response": running},
        {"type": "response.output_item.added", "output_index": 0, "item": opened},
        {"type": "response.content_part.added", **at, "part": {**part, "text": ""}},
        *({"type": "response.output_text.delta", **at, "delta": w, "logprobs": []} for w in words),
        {"type": "response.output_text.done", **at, "text": part["text"], "logprobs": []},
        {"type": "response.content_part.done", **at, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": "response.completed", "response": done},
    ]
    return [sse_event(e["type"], {**e, "sequence_number": n}) for n, e in enumerate(events)]


def openai_responses(body: Json, raw: bytes, *, now: int) -> MockResponse:
    """POST /v1/responses (the Responses API); with ``"stream": true`` its typed SSE events
    (an ``event:`` line each, numbered by ``sequence_number``, no ``[DONE]``)."""
    model = string_field(body, "model")
    prompt, n_items = _responses_prompt(body)
    words = reply_words(n_items)
    text = {"type": "output_text", "text": "".join(words), "annotations": [], "logprobs": []}
    message = {
        "id": request_id("msg_mock", raw),
        "type": "message",
        "status": "completed",
        "role": "assistant",
        "content": [text],
    }
    instructions = body.get("instructions")
    response: Json = {
        "id": request_id("resp_mock", raw),
        "object": "response",
        "created_at": now,
        "status": "completed",
        "completed_at": now,
        "error": None,
        "incomplete_details": None,
        "instructions": instructions if isinstance(instructions, str) else None,
        "model": model,
        "output": [message],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "truncation": "disabled",
        "usage": _responses_usage(prompt),
        "metadata": {},
    }
    if body.get("stream") is not True:
        return json_response(200, response)
    return sse_response(_responses_events(response, words))
