"""The fake Gemini behind ``aroutd mock-upstream``: generateContent and friends, pure.

Same rules as ``mock_providers`` (deterministic usage, model echoed, the reply
``"mock reply to N messages"``), in Gemini's shapes: ``candidates`` and ``usageMetadata``
(camelCase, as the REST API sends it), SSE events ending in CRLF CRLF like Gemini's, and
usageMetadata on every streamed chunk.
"""

from __future__ import annotations

from aroutd.errors import BadRequest
from aroutd.mock import providers as p

__all__ = [
    "GEMINI_MODELS",
    "gemini_count_tokens",
    "gemini_embed",
    "gemini_generate",
    "gemini_model",
    "gemini_models",
]

GEMINI_MODELS = ("gemini-2.0-flash", "gemini-2.5-pro", "text-embedding-004")


def _gemini_prompt(body: p.Json) -> tuple[int, int]:
    """(prompt tokens, number of contents) of a generateContent body."""
    contents = p.object_list(body, "contents")
    chars = sum(p.text_chars(c.get("parts")) for c in contents)
    system = body.get("systemInstruction", body.get("system_instruction"))
    if isinstance(system, dict):
        chars += p.text_chars(system.get("parts"))
    return p.prompt_tokens(chars), len(contents)


def _gemini_usage(prompt: int, candidates: int) -> p.Json:
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": candidates,
        "totalTokenCount": prompt + candidates,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }


def gemini_generate(
    body: p.Json, raw: bytes, model: str, *, stream: bool, sse: bool
) -> p.MockResponse:
    """:generateContent, or :streamGenerateContent (SSE with ``alt=sse``, else a JSON array).

    Streamed chunks carry usageMetadata with a cumulative candidatesTokenCount ending at
    ``COMPLETION_TOKENS``, and the last one the finishReason, as Gemini does. SSE events end
    with CRLF CRLF like Gemini's.
    """
    prompt, n_contents = _gemini_prompt(body)
    words = p.reply_words(n_contents)
    response_id = p.request_id("mock", raw)

    def chunk(text: str, finish: bool, candidates: int) -> p.Json:
        candidate: p.Json = {"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": _gemini_usage(prompt, candidates),
            "modelVersion": model,
            "responseId": response_id,
        }

    if not stream:
        return p.json_response(200, chunk("".join(words), True, p.COMPLETION_TOKENS))
    n = len(words)
    # ceil(7 * (i + 1) / n): rising, and exactly COMPLETION_TOKENS on the last chunk
    chunks = [
        chunk(w, i == n - 1, -(-p.COMPLETION_TOKENS * (i + 1) // n)) for i, w in enumerate(words)
    ]
    if not sse:
        return p.json_response(200, chunks)
    return p.sse_response([f"data: {p.dumps(c)}\r\n\r\n".encode() for c in chunks])


def gemini_count_tokens(body: p.Json) -> p.MockResponse:
    """:countTokens, with ``contents`` at the top or inside ``generateContentRequest``."""
    inner = body.get("generateContentRequest")
    prompt, _ = _gemini_prompt(inner if isinstance(inner, dict) else body)
    details = [{"modality": "TEXT", "tokenCount": prompt}]
    return p.json_response(200, {"totalTokens": prompt, "promptTokensDetails": details})


def _gemini_embedding(request: p.Json) -> p.Json:
    content = request.get("content")
    if not isinstance(content, dict):
        raise BadRequest("'content' must be an object")
    parts = content.get("parts")
    texts = parts if isinstance(parts, list) else []
    text = "".join(
        t["text"] for t in texts if isinstance(t, dict) and isinstance(t.get("text"), str)
    )
    dims = p.embedding_dims(request.get("outputDimensionality"), p.DEFAULT_EMBEDDING_DIMS)
    return {"values": p.embedding_vector(text, dims)}


def gemini_embed(body: p.Json, *, batch: bool) -> p.MockResponse:
    """:embedContent, or :batchEmbedContents (what google-genai calls)."""
    if not batch:
        return p.json_response(200, {"embedding": _gemini_embedding(body)})
    requests = p.object_list(body, "requests")
    return p.json_response(200, {"embeddings": [_gemini_embedding(r) for r in requests]})


def _gemini_model(model: str) -> p.Json:
    name = model if model.startswith("models/") else f"models/{model}"
    methods = ["generateContent", "streamGenerateContent", "countTokens", "embedContent"]
    return {
        "name": name,
        "version": "001",
        "displayName": name.removeprefix("models/"),
        "inputTokenLimit": 1_048_576,
        "outputTokenLimit": 8192,
        "supportedGenerationMethods": methods,
    }


def gemini_models() -> p.MockResponse:
    return p.json_response(200, {"models": [_gemini_model(m) for m in GEMINI_MODELS]})


def gemini_model(model: str) -> p.MockResponse:
    """GET /v1beta/models/{model}: every model exists."""
    return p.json_response(200, _gemini_model(model))
