"""An outside vision-language model behind an OpenAI-compatible chat-completions server (vLLM,
SGLang, Ollama, a hosted API) as a policy for `policy.evaluation`.

    policy = APIPolicy("http://127.0.0.1:8000/v1", "Qwen/Qwen2.5-VL-7B-Instruct")
    metrics, _ = evaluation.evaluate(games, policy, boards=10, steps=100)

Each board is one request: the game's instructions as text and its frame as a base64 PNG
`image_url`. Requests run `concurrency` at a time; a 429, a 5xx, a timeout or a refused
connection is retried `retries` times with exponential back-off (a server's `Retry-After` is
honoured, up to `MAX_WAIT_S`). A reply that is not text, is empty or does not parse is an
invalid move. A request that still fails is an invalid move too, counted in `api_errors` and
not saved, so that a rerun asks it again.

The API key is read from the environment variable `key_env` (default `OPENAI_API_KEY`) and sent
only in the `Authorization` header; it is never printed, logged or written. With `results`,
every reply is appended to that JSON-lines file as it arrives; a rerun with the same file asks
only for the boards not answered yet (a file written for other boards is an error).
"""

from __future__ import annotations

import base64
import concurrent.futures
import hashlib
import io
import json
import os
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import numpy as np
from PIL import Image

from jaxgym import text as game_text

RETRIED_STATUS = (408, 409, 429, 500, 502, 503, 504)
MAX_WAIT_S = 60.0


class APIError(RuntimeError):
    """A request that failed for good (after its retries, or a status that is not retried)."""


def png_data_url(frame: np.ndarray) -> str:
    """A uint8[H, W, 3] frame as a `data:image/png;base64,...` URL."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(frame, np.uint8)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def chat_request(model: str, prompt: str, frame: np.ndarray, max_tokens: int,
                 temperature: float) -> dict:
    """The chat-completions body for one board: the prompt text, then the frame."""
    content = [{"type": "text", "text": prompt},
               {"type": "image_url", "image_url": {"url": png_data_url(frame)}}]
    return dict(model=model, messages=[dict(role="user", content=content)],
                max_tokens=max_tokens, temperature=temperature)


def reply_text(body: Any) -> str:
    """The text of a chat-completions reply; "" for anything else (no choices, a null or
    non-text content), which then parses as an invalid move."""
    try:
        content = body["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return ""
    if isinstance(content, list):  # some servers answer in content parts
        content = "".join(part.get("text", "") for part in content
                          if isinstance(part, dict) and isinstance(part.get("text"), str))
    return content if isinstance(content, str) else ""


class APIPolicy:
    """A policy whose responses come from a chat-completions server, as texts (`respond_texts`).
    `prompt_style`: the game's instructions sent with each frame ("full": all of them)."""

    image_first, restate_board = False, False

    def __init__(self, base_url: str, model: str, key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 4, timeout: float = 60.0, retries: int = 3,
                 backoff: float = 1.0, max_tokens: int = 1024, temperature: float = 0.0,
                 results: str | None = None, prompt_style: str = "full"):
        if concurrency < 1 or retries < 0 or timeout <= 0 or max_tokens < 1:
            raise ValueError("concurrency and max_tokens must be >= 1, retries >= 0, "
                             "timeout > 0")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.key_env = model, key_env
        self.concurrency, self.timeout, self.retries, self.backoff = (
            concurrency, timeout, retries, backoff)
        self.max_tokens, self.temperature = max_tokens, temperature
        self.prompt_style = prompt_style
        self.results = results
        self.saved = _read_results(results) if results else {}
        self.errors = 0  # requests that failed for good, over this policy's life
        self.asked = 0  # requests sent (not answered from the results file)
        self._count = threading.Lock()

    def __repr__(self) -> str:  # never shows the key
        return f"APIPolicy({self.url!r}, model={self.model!r})"

    def respond_texts(self, games, states, frames, key, step: int) -> list[str]:
        """One reply per board (board order); `step` names the requests in the results file."""
        frames = np.asarray(frames)
        prompts = [game_text.prompt(env, self.prompt_style)
                   for env, s in zip(games.envs, states) for _ in range(len(s.board))]
        names = [f"step {step} board {b}" for b in range(len(frames))]
        digests = [_digest(self.model, p, f) for p, f in zip(prompts, frames)]
        replies: list[str | None] = []
        for name, digest in zip(names, digests):
            saved = self.saved.get(name)
            if saved is not None and saved["board"] != digest:
                raise ValueError(
                    f"{self.results} holds a reply to another board as {name!r} (another game, "
                    "seed, protocol or model's earlier moves); pass another --results file")
            replies.append(None if saved is None else saved["reply"])
        todo = [b for b, reply in enumerate(replies) if reply is None]
        with concurrent.futures.ThreadPoolExecutor(self.concurrency) as pool:
            futures = {pool.submit(self._ask, prompts[b], frames[b]): b for b in todo}
            for future in concurrent.futures.as_completed(futures):
                b = futures[future]
                try:
                    replies[b] = future.result()
                except APIError:
                    self.errors += 1
                    replies[b] = ""
                    continue
                self._save(names[b], digests[b], replies[b])
        return [r or "" for r in replies]

    def _ask(self, prompt: str, frame: np.ndarray) -> str:
        with self._count:
            self.asked += 1
        body = json.dumps(chat_request(self.model, prompt, frame, self.max_tokens,
                                       self.temperature)).encode()
        headers = {"Content-Type": "application/json"}
        if os.environ.get(self.key_env):
            headers["Authorization"] = "Bearer " + os.environ[self.key_env]
        for attempt in range(self.retries + 1):
            wait = self.backoff * 2 ** attempt
            try:
                request = urllib.request.Request(self.url, body, headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                try:
                    return reply_text(json.loads(raw))
                except (ValueError, UnicodeDecodeError):
                    return ""  # a body that is not JSON: the model's turn is lost, not the run
            except urllib.error.HTTPError as error:
                if error.code not in RETRIED_STATUS or attempt == self.retries:
                    raise APIError(f"{self.url} answered HTTP {error.code}") from None
                wait = _retry_after(error.headers.get("Retry-After"), wait)
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as error:
                if attempt == self.retries:
                    reason = getattr(error, "reason", error)
                    raise APIError(f"{self.url}: {type(reason).__name__}") from None
            time.sleep(min(wait, MAX_WAIT_S))
        raise AssertionError("unreachable")

    def _save(self, name: str, digest: str, reply: str) -> None:
        self.saved[name] = dict(board=digest, reply=reply)
        if self.results:
            with open(self.results, "a") as f:
                f.write(json.dumps(dict(request=name, board=digest, reply=reply)) + "\n")


def _digest(model: str, prompt: str, frame: np.ndarray) -> str:
    """What a saved reply answered: the model, the prompt and the frame."""
    content = model.encode() + b"\0" + prompt.encode() + np.ascontiguousarray(frame).tobytes()
    return hashlib.sha1(content).hexdigest()[:16]


def _retry_after(header: str | None, default: float) -> float:
    try:
        return max(0.0, float(header)) if header is not None else default
    except ValueError:
        return default


def _read_results(path: str) -> dict[str, dict]:
    """The replies saved in a results file. A torn last line (a run killed mid-write) is cut
    off the file, so that the next reply starts a line of its own; any other unreadable line
    is an error."""
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        content = f.read()
    lines = content.split("\n")
    saved = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            saved[entry["request"]] = dict(board=entry["board"], reply=str(entry["reply"]))
        except (ValueError, KeyError, TypeError):
            if number < len(lines):
                raise ValueError(f"{path}: line {number} is not a saved reply") from None
            with open(path, "w") as f:  # the last line, cut short
                f.write(content[:len(content) - len(line)])
    return saved
