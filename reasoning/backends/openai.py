"""Any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, ollama) as a reasoning backend.

There are no logits to constrain, so validity comes from the Proposer's validate-and-repair loop. The API
key is read from an environment variable (``OPENAI_API_KEY`` by default) and never logged or shown.
Requests have a timeout and are retried with exponential backoff on connection errors, 429 and 5xx.

>>> reasoner = OpenAIReasoner("http://127.0.0.1:8000/v1", model="local")
>>> extract_smiles("The answer is <smiles> CCO </smiles>.")
'CCO'
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.error
import urllib.request

from reasoning.decoding import GeneratedText, SmilesBounds
from workbench.errors import WorkbenchError

__all__ = ["OpenAIReasoner", "EndpointError", "extract_smiles", "SYSTEM_PROMPT"]

SYSTEM_PROMPT = (
    "You are a medicinal chemist. Read the design spec, reason step by step (restate the constraints, "
    "choose a scaffold, add substituents one at a time with property estimates, check every constraint), "
    "then give exactly one molecule as SMILES between <smiles> and </smiles>."
)

_SMILES_TAG = re.compile(r"<smiles>\s*([^<\s]+)\s*</smiles>", re.IGNORECASE)


class EndpointError(WorkbenchError, ConnectionError):
    """The chat endpoint could not be reached or refused the request; the message says which and why."""


def extract_smiles(text: str) -> str:
    """The last ``<smiles> ... </smiles>`` answer in a reply (empty string when there is none)."""
    found = _SMILES_TAG.findall(text or "")
    return found[-1] if found else ""


class OpenAIReasoner:
    """Chat-completions client: one request per call, ``n`` choices (sequential requests if the server
    returns fewer).

    ``api_key_env`` names the environment variable holding the key (no key: no Authorization header).
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 30.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_tokens: int = 700,
        temperature: float = 0.8,
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_tokens = max_tokens
        self.temperature = temperature

    def __repr__(self) -> str:  # the key is never part of the representation
        return f"OpenAIReasoner(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, payload: dict) -> dict:
        url = f"{self.base_url}/chat/completions"
        body = json.dumps(payload).encode()
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=body, headers=self._headers(), method="POST")
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    return json.loads(response.read().decode())
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code} {exc.reason}"
                if exc.code not in (429, 500, 502, 503, 504):
                    raise EndpointError(f"{url} refused the request: {last}") from None
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
                last = str(getattr(exc, "reason", exc)) or type(exc).__name__
            except json.JSONDecodeError:
                raise EndpointError(f"{url} did not answer with JSON; is it an OpenAI-compatible server?") from None
            if attempt < self.retries:
                time.sleep(self.backoff_s * 2**attempt)
        raise EndpointError(
            f"could not reach {url} after {self.retries + 1} attempt(s) ({last}); "
            "check that the server is running and that base_url ends in /v1"
        )

    def generate(
        self,
        prompt: str,
        n: int,
        *,
        seed: int = 0,
        elements: list[str] | None = None,
        constrained: bool = True,
        bounds: SmilesBounds | None = None,
    ) -> list[GeneratedText]:
        """``n`` replies for the spec prompt; ``constrained`` and ``bounds`` are ignored (no logits over HTTP)."""
        user = prompt if elements is None else f"{prompt}\nUse only these elements: {' '.join(elements)}."
        payload = {
            "model": self.model,
            "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
            "n": n,
            "seed": seed,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
        }
        texts: list[str] = []
        while len(texts) < n:
            reply = self._post({**payload, "n": n - len(texts), "seed": seed + len(texts)})
            choices = reply.get("choices") or []
            if not choices:
                raise EndpointError(f"{self.base_url} returned no choices: {str(reply)[:200]}")
            texts += [(c.get("message") or {}).get("content") or "" for c in choices]
        return [GeneratedText(trace=t, smiles=extract_smiles(t)) for t in texts[:n]]
