"""A stand-in for a served VLM: an OpenAI-compatible chat-completions server on 127.0.0.1 that
answers every request with a uniformly random move of the game, in the answer format.

    python -m bench.chat_server --game swap --port 8000 &
    python -m policy.evaluate --game swap --api-base http://127.0.0.1:8000/v1 \
        --api-model random --protocol paper

It shows the `--api-base` path end to end without a model (its figures are a random policy's),
and is what the README's table of that path was measured against. `--fail-every N` answers
every Nth request with HTTP 500 (the client retries it).
"""

from __future__ import annotations

import argparse
import http.server
import json
import threading

import numpy as np

import jaxgym
from jaxgym import text


def make_server(game: str, port: int = 0, seed: int = 0, fail_every: int = 0,
                max_requests: int | None = None) -> http.server.ThreadingHTTPServer:
    """The server, bound to 127.0.0.1:`port` (0: any free port), not yet serving."""
    env = jaxgym.make(game, preset="easy")
    rng = np.random.default_rng(seed)
    lock = threading.Lock()
    count = [0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                count[0] += 1
                n, action = count[0], int(rng.integers(env.num_actions))
            if max_requests is not None and n > max_requests:
                return self.reply(429, {"error": "request limit reached"})
            if fail_every and n % fail_every == 0:
                return self.reply(500, {"error": "scripted failure"})
            answer = text.response_text("", "", text.answer_text(env, action))
            self.reply(200, {"object": "chat.completion", "model": "random", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": answer},
                 "finish_reason": "stop"}]})

        def reply(self, status: int, body: dict) -> None:
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--game", default="swap", choices=sorted(jaxgym.list_games()))
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fail-every", type=int, default=0)
    args = parser.parse_args(argv)
    server = make_server(args.game, args.port, args.seed, args.fail_every)
    print(f"serving random {args.game} moves on http://127.0.0.1:{server.server_address[1]}/v1",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
