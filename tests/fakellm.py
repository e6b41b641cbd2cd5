"""A small deterministic OpenAI-compatible chat server for tests (a hosted LLM cannot run here).

It answers with the first sentence of context passage [1], cited as ``[1]``, so the real
client path (LlamaIndex's OpenAI-like LLM, the openai package) is exercised end to end.
As a judge it answers ragas 0.4.3's prompts with the JSON they expect, each verdict
decided by word overlap, so RAGAS's real faithfulness code path runs.
The model name selects failure modes: ``slow`` sleeps past any sane timeout,
``broken`` answers HTTP 500, ``truncating`` cuts every answer in half with
``finish_reason: "length"`` (a completion limit reached) and ``babbling`` answers prose
where a judge must answer JSON. ``inventing`` adds an invented sentence (a number and a name
the passages do not hold) to its faithful one, and ``declining`` answers with the sentinel the
prompt asks for when the context lacks the answer ("reply with exactly X").
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# ragas 0.4.3 judge prompts (ragas.metrics.collections), recognised by their instruction text.
_JUDGE_PROMPTS = {
    "Break down each sentence into one or more fully understandable statements": "statements",
    "judge the faithfulness of a series of statements based on a given context": "nli",
    "verify if the context was useful in arriving at the given answer": "precision",
    "classify if the statement can be attributed to the given context or not": "recall",
    "Generate a question for the given answer and identify if the answer is noncommittal": "relevancy",
}
_JUDGE_INPUT = re.compile(r"Now perform the same with the following input\s*\ninput:\s*(\{.*\})\s*\nOutput:\s*$", re.S)
_WORD = re.compile(r"[a-z0-9]+")


def _supported(claim: str, reference: str) -> int:
    """1 when at least half of the claim's words of 4+ letters occur in the reference."""
    words = [w for w in _WORD.findall(claim.lower()) if len(w) >= 4]
    if not words:
        return 1
    known = set(_WORD.findall(reference.lower()))
    return int(sum(w in known for w in words) * 2 >= len(words))


def _sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if s.strip()]


def judge_answer(prompt: str) -> dict[str, Any] | None:
    """The JSON a judge returns for a ragas prompt, decided by word overlap; None if not a judge prompt."""
    kind = next((k for marker, k in _JUDGE_PROMPTS.items() if marker in prompt), None)
    match = _JUDGE_INPUT.search(prompt)
    if kind is None or match is None:
        return None
    data = json.loads(match.group(1))
    if kind == "statements":
        return {"statements": _sentences(data.get("answer", "")) or ["(empty)"]}
    if kind == "nli":
        context = data.get("context", "")
        return {
            "statements": [
                {"statement": s, "reason": "checked against the context", "verdict": _supported(s, context)}
                for s in data.get("statements", [])
            ]
        }
    if kind == "precision":
        return {"reason": "word overlap", "verdict": _supported(data.get("answer", ""), data.get("context", ""))}
    if kind == "recall":
        context = data.get("context", "")
        return {
            "classifications": [
                {"statement": s, "reason": "word overlap", "attributed": _supported(s, context)}
                for s in _sentences(data.get("answer", "")) or ["(empty)"]
            ]
        }
    response = data.get("response", "").strip()
    return {"question": (response.rstrip(" .!?") or "What") + "?", "noncommittal": 0}


INVENTED_SENTENCE = "It was first released by Initech in 1987 with 4096 layers [1]."
_SENTINEL_REQUEST = re.compile(r"reply with exactly (\S+?)[.,]? and nothing else")
_PASSAGE = re.compile(r"^\[1\] \([^)]*\)\n(.+?)(?:\n\n\[2\]|\n\nQuestion:|\Z)", re.S | re.M)


def scripted_answer(prompt: str) -> str:
    match = _PASSAGE.search(prompt)
    if not match:
        return "The knowledge base does not answer this."
    first = re.split(r"(?<=[.!?])\s+", match.group(1).strip().replace("\n", " "))[0]
    return f"{first[:300]} [1]"


class _Handler(BaseHTTPRequestHandler):
    server: FakeLLMServer

    def log_message(self, *_: Any) -> None:
        pass

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        request = json.loads(self.rfile.read(length))
        self.server.requests.append(request)
        model = request.get("model", "")
        if not self.path.endswith("/chat/completions"):
            self._json(404, {"error": {"message": "unknown path"}})
            return
        if model == "broken":
            self._json(500, {"error": {"message": "the model crashed", "type": "server_error"}})
            return
        if model == "slow":
            time.sleep(5)
        prompt = request["messages"][-1]["content"]
        if isinstance(prompt, list):
            prompt = " ".join(part.get("text", "") for part in prompt)
        first_user = next((m["content"] for m in request["messages"] if m.get("role") == "user"), "")
        judged = judge_answer(first_user if isinstance(first_user, str) else "")
        answer = json.dumps(judged) if judged is not None else scripted_answer(prompt)
        finish_reason = "stop"
        if model == "inventing" and judged is None:
            answer = f"{answer} {INVENTED_SENTENCE}"
        elif model == "declining" and judged is None:
            everything = " ".join(str(m.get("content", "")) for m in request["messages"])
            requested = _SENTINEL_REQUEST.search(everything)
            answer = requested.group(1) if requested else "The knowledge base does not answer this."
        if model == "truncating":
            answer, finish_reason = answer[: len(answer) // 2], "length"
        elif model == "babbling":
            answer = "Sure! Looking at the context, I would say the statements are mostly supported."
        usage = {
            "prompt_tokens": len(prompt.split()),
            "completion_tokens": len(answer.split()),
            "total_tokens": len(prompt.split()) + len(answer.split()),
        }
        if not request.get("stream"):
            self._json(
                200,
                {
                    "id": "cmpl-fake",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": answer},
                            "finish_reason": finish_reason,
                        }
                    ],
                    "usage": usage,
                },
            )
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for event in self._chunks(model, answer, usage, request):
            self.wfile.write(f"data: {event}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")

    @staticmethod
    def _chunks(model: str, answer: str, usage: dict[str, int], request: dict[str, Any]) -> Iterator[str]:
        base = {"id": "cmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model}
        for i, word in enumerate(answer.split(" ")):
            delta = {"content": word if i == 0 else " " + word}
            yield json.dumps({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]})
        yield json.dumps({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (request.get("stream_options") or {}).get("include_usage"):
            yield json.dumps({**base, "choices": [], "usage": usage})


class FakeLLMServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The timeout test's client hangs up on purpose; anything else is a real failure.
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def running_fake_llm() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
