"""``workbench serve``: the compact reasoning model behind an OpenAI-compatible chat endpoint.

``POST /v1/chat/completions`` takes the usual body (``model``, ``messages``, ``n``, ``seed``,
``temperature``). The last user message is either the model's own spec prompt (what
``reasoning.backends.openai.OpenAIReasoner`` sends) or a design spec in YAML/JSON (what a person types).
Each choice is the reasoning trace followed by ``<smiles>…</smiles>``, decoded under RDKit constraints.
``GET /v1/models`` lists the model; ``GET /health`` answers ``ok``.

The server binds 127.0.0.1 unless told otherwise, checks an optional bearer key, caps the body size and
``n`` (a larger ``n`` gets ``max_n`` choices; clients ask again for the rest), and answers malformed
requests with 400 and a message. No request can stop it.

>>> server = create_server(port=0, backend=None)  # doctest: +SKIP
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reasoning.decoding import SmilesBounds

__all__ = ["create_server", "serve", "MODEL_ID", "MAX_BODY_BYTES", "MAX_N"]

MODEL_ID = "workbench-compact"
MAX_BODY_BYTES = 64 * 1024
MAX_N = 16
_ELEMENTS_LINE = re.compile(r"\n?Use only these elements:\s*([A-Za-z ]+)\.?\s*$")


class RequestError(Exception):
    def __init__(self, status: HTTPStatus, message: str, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.kind = kind


def _user_prompt(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise RequestError(HTTPStatus.BAD_REQUEST, "'messages' must be a non-empty list of {role, content} objects")
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"messages[{i}] must be an object with 'role' and 'content'")
    users = [m for m in messages if m.get("role") == "user"]
    if not users:
        raise RequestError(HTTPStatus.BAD_REQUEST, "no message with role 'user'")
    content = users[-1].get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        content = "\n".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str) or not content.strip():
        raise RequestError(HTTPStatus.BAD_REQUEST, "the last user message has no text content")
    return content


def _model_prompt(content: str) -> tuple[str, list[str] | None, SmilesBounds | None]:
    """The model's prompt, the allowed elements and the decoding bounds, from what the user sent: a YAML/JSON
    design spec, or the model's own ``<spec> ... </spec>`` text."""
    from reasoning.decoding import SmilesBounds
    from reasoning.traces import parse_spec, render_spec
    from workbench.chem.spec import DesignSpec
    from workbench.errors import SpecError

    elements = None
    match = _ELEMENTS_LINE.search(content)
    if match:
        elements = match.group(1).split()
        content = content[: match.start()]
    text = content.strip()
    if text.startswith("<spec>"):
        try:
            spec = parse_spec(text)
        except SpecError as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"the <spec> block cannot be read: {exc}") from None
        if spec.elements is not None:
            elements = list(spec.elements)
        return text, elements, SmilesBounds.from_spec(spec)
    try:
        spec = DesignSpec.from_yaml(text)
    except SpecError as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"the user message is not a design spec: {exc}") from None
    if not spec.n_constraints:
        raise RequestError(
            HTTPStatus.BAD_REQUEST,
            "the user message holds no constraints; send a design spec in YAML or JSON, e.g. "
            '{"properties": {"mw": [250, 400]}, "require": ["C(=O)N"]}',
        )
    if spec.elements is not None:
        elements = list(spec.elements)
    return render_spec(spec), elements, SmilesBounds.from_spec(spec)


def _int_field(body: dict, name: str, default: int, lo: int, hi: int) -> int:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"'{name}' must be an integer from {lo} to {hi}, got {value!r}")
    return value


class _Handler(BaseHTTPRequestHandler):
    server: WorkbenchServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet by default; never logs headers (keys)
        if self.server.verbose:
            super().log_message(fmt, *args)

    def _send(self, status: HTTPStatus, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, message: str, kind: str = "invalid_request_error") -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": int(status)}})

    def _authorised(self) -> bool:
        key = self.server.api_key
        if not key:
            return True
        given = self.headers.get("Authorization", "")
        return given.startswith("Bearer ") and secrets.compare_digest(given[len("Bearer ") :], key)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        try:
            if self.path.rstrip("/") == "/health":
                self._send(HTTPStatus.OK, {"status": "ok"})
            elif not self._authorised():
                self._error(HTTPStatus.UNAUTHORIZED, "missing or wrong API key", "authentication_error")
            elif self.path.rstrip("/") == "/v1/models":
                self._send(
                    HTTPStatus.OK,
                    {"object": "list", "data": [{"id": MODEL_ID, "object": "model", "owned_by": "workbench"}]},
                )
            else:
                self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}; use POST /v1/chat/completions")
        except Exception:  # never let a request take the server down
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error", "server_error")

    def do_POST(self) -> None:  # noqa: N802
        try:
            if self.path.rstrip("/") != "/v1/chat/completions":
                raise RequestError(HTTPStatus.NOT_FOUND, f"no route {self.path}; use POST /v1/chat/completions")
            if not self._authorised():
                raise RequestError(HTTPStatus.UNAUTHORIZED, "missing or wrong API key", "authentication_error")
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required")
            if int(length) > self.server.max_body:
                self.close_connection = True
                raise RequestError(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"request body over {self.server.max_body} bytes"
                )
            raw = self.rfile.read(int(length))
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"malformed JSON body: {exc}") from None
            if not isinstance(body, dict):
                raise RequestError(HTTPStatus.BAD_REQUEST, "the body must be a JSON object")
            self._send(HTTPStatus.OK, self.server.complete(body))
        except RequestError as exc:
            self._error(exc.status, str(exc), exc.kind)
        except Exception as exc:
            if self.server.verbose:
                traceback.print_exc()
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"internal error: {type(exc).__name__}", "server_error")


class WorkbenchServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], backend: Any, *, api_key: str | None, max_body: int, max_n: int, verbose: bool
    ):
        super().__init__(address, _Handler)
        self.backend = backend
        self.api_key = api_key
        self.max_body = max_body
        self.max_n = max_n
        self.verbose = verbose
        self._lock = threading.Lock()  # one generation at a time: the model is not re-entrant

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/v1"

    def complete(self, body: dict) -> dict:
        prompt, elements, bounds = _model_prompt(_user_prompt(body.get("messages")))
        n = min(_int_field(body, "n", 1, 1, 10_000), self.max_n)  # more than max_n: max_n choices come back
        seed = _int_field(body, "seed", 0, 0, 2**31 - 1)
        temperature = body.get("temperature")
        if temperature is not None and (not isinstance(temperature, int | float) or not 0 <= temperature <= 2):
            raise RequestError(
                HTTPStatus.BAD_REQUEST, f"'temperature' must be a number from 0 to 2, got {temperature!r}"
            )
        with self._lock:
            previous = getattr(self.backend, "temperature", None)
            if temperature is not None and previous is not None:
                self.backend.temperature = max(float(temperature), 1e-3)
            try:
                samples = self.backend.generate(
                    prompt, n, seed=seed, elements=elements, constrained=True, bounds=bounds
                )
            finally:
                if previous is not None:
                    self.backend.temperature = previous
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": f"{s.trace}\n<smiles>{s.smiles}</smiles>"},
                "finish_reason": "stop",
            }
            for i, s in enumerate(samples)
        ]
        completion_tokens = sum(len(c["message"]["content"].split()) for c in choices)
        prompt_tokens = len(prompt.split())
        return {
            "id": f"chatcmpl-{secrets.token_hex(12)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": MODEL_ID,
            "choices": choices,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def create_server(
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    backend: Any = None,
    api_key: str | None = None,
    max_body: int = MAX_BODY_BYTES,
    max_n: int = MAX_N,
    verbose: bool = False,
) -> WorkbenchServer:
    """A server (not yet serving) for ``backend`` (default: the shipped compact reasoning model)."""
    if backend is None:
        from reasoning.backends import load_backend

        backend = load_backend("compact")
    return WorkbenchServer(
        (host, port), backend, api_key=api_key or None, max_body=max_body, max_n=max_n, verbose=verbose
    )


def serve(host: str = "127.0.0.1", port: int = 8000, *, api_key: str | None = None, verbose: bool = True) -> None:
    """Serve until interrupted."""
    server = create_server(host, port, api_key=api_key, verbose=verbose)
    print(f"serving {MODEL_ID} at {server.url} (POST /chat/completions)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
