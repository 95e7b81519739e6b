"""policy.api and `policy.evaluate --api-base`: an outside model behind a chat-completions server,
here a real HTTP server on 127.0.0.1 started by the test, answering scripted replies (right,
malformed, not text, slow, 500s). Bounded: every server stops after MAX_REQUESTS requests and
every request times out."""

import base64
import contextlib
import http.server
import io
import json
import threading
import time

import jax
import numpy as np
import pytest
from PIL import Image

from policy import api, episodes, evaluate, evaluation, tokenizer as tokenization

MAX_REQUESTS = 200
GAMES = episodes.GameSet.make("swap", "easy", "full", False, False)
BOARDS = 6


def frame_key(frame: np.ndarray) -> bytes:
    return np.ascontiguousarray(frame, np.uint8).tobytes()


class ScriptedServer(http.server.ThreadingHTTPServer):
    """Answers each board (recognised by its frame) with `script[board]`: a reply text, or one
    of the behaviours "500 then right", "slow then right", "always 500", "null", "parts",
    "not json". Counts requests and keeps the Authorization headers it saw."""

    def __init__(self, frames, replies, script):
        super().__init__(("127.0.0.1", 0), Handler)
        self.boards = {frame_key(f): b for b, f in enumerate(frames)}
        self.replies, self.script = replies, script
        self.requests, self.attempts, self.auth = 0, {}, set()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_POST(self):
        server = self.server
        with server.lock:
            server.requests += 1
            if server.requests > MAX_REQUESTS:
                raise RuntimeError("the test server was asked too often")
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server.auth.add(self.headers.get("Authorization"))
        assert self.path == "/v1/chat/completions" and body["model"] == "scripted"
        content = body["messages"][0]["content"]
        assert content[0]["type"] == "text" and "Swap" in content[0]["text"]
        url = content[1]["image_url"]["url"]
        png = base64.b64decode(url.removeprefix("data:image/png;base64,"))
        board = server.boards.get(frame_key(np.asarray(Image.open(io.BytesIO(png)))))
        with server.lock:
            attempt = server.attempts[board] = server.attempts.get(board, 0) + 1
        behaviour = server.script.get(board, "right")
        if behaviour == "always 500" or (behaviour == "500 then right" and attempt == 1):
            return self.send(500, b'{"error": "overloaded"}')
        if behaviour == "slow then right" and attempt == 1:
            time.sleep(1.0)  # past the client's timeout
        if behaviour == "not json":
            return self.send(200, b"<html>oops</html>")
        message = {"role": "assistant", "content": server.replies[board]}
        if behaviour == "null":
            message["content"] = None
        elif behaviour == "parts":
            message["content"] = [{"type": "text", "text": server.replies[board]}]
        elif behaviour not in ("right", "500 then right", "slow then right"):
            message["content"] = behaviour  # a scripted reply text
        self.send(200, json.dumps({"choices": [{"message": message}]}).encode())

    def send(self, status, payload):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(payload)


@contextlib.contextmanager
def serving(script, seed=0):
    """A scripted server for the first step's held-out boards of `seed`."""
    states = GAMES.deal(episodes.eval_key(seed), BOARDS, 0)
    frames = np.asarray(GAMES.draw(states))
    replies = GAMES.cold_start_texts(states)  # the expert's responses
    server = ScriptedServer(frames, replies, script)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


SCRIPT = {1: "<answer>banana</answer>", 2: "null", 3: "", 4: "500 then right",
          5: "slow then right"}


def test_scripted_replies_score_as_the_paper_counts_them(tmp_path):
    with serving({**SCRIPT, 0: "parts"}) as server:
        policy = api.APIPolicy(server.url, "scripted", concurrency=3, timeout=0.5, retries=2,
                               backoff=0.01, results=str(tmp_path / "replies.jsonl"))
        metrics, _ = evaluation.evaluate(GAMES, policy, BOARDS, 1, progress=False)
        # boards 0 (content parts), 4 (a 500, retried) and 5 (a timeout, retried) are right;
        # 1 (malformed), 2 (null content) and 3 (empty) are invalid moves
        assert metrics["valid_move_rate"] == pytest.approx(3 / 6)
        assert metrics["format_rate"] == pytest.approx(3 / 6)
        assert policy.errors == 0 and server.attempts[4] == 2 and server.attempts[5] >= 2
        assert server.auth == {None}  # no key in the environment: no header
        # a rerun with the results file asks nothing and scores the same
        asked = server.requests
        again = api.APIPolicy(server.url, "scripted", results=str(tmp_path / "replies.jsonl"))
        assert evaluation.evaluate(GAMES, again, BOARDS, 1, progress=False)[0] == metrics
        assert server.requests == asked and again.asked == 0


def test_failed_requests_are_invalid_moves_and_asked_again_on_a_rerun(tmp_path):
    results = str(tmp_path / "replies.jsonl")
    with serving({2: "always 500", 3: "not json"}) as server:
        policy = api.APIPolicy(server.url, "scripted", retries=1, backoff=0.01, results=results)
        metrics, _ = evaluation.evaluate(GAMES, policy, BOARDS, 1, progress=False)
        assert policy.errors == 1 and server.attempts[2] == 2
        assert metrics["valid_move_rate"] == pytest.approx(4 / 6)  # 2 failed, 3 not JSON
        server.script = {}  # the server recovers: only board 2 is asked again
        asked = server.requests
        again = api.APIPolicy(server.url, "scripted", results=results)
        assert evaluation.evaluate(GAMES, again, BOARDS, 1, progress=False)[0][
            "valid_move_rate"] == pytest.approx(5 / 6)
        assert server.requests == asked + 1 and again.errors == 0
    # a torn last line (a run killed mid-write) is dropped; replies to other boards are refused
    with open(results, "a") as f:
        f.write('{"request": "step 0 board 9", "bo')
    assert len(api._read_results(results)) == BOARDS
    with serving({}, seed=1) as server:
        other = api.APIPolicy(server.url, "scripted", results=results)
        with pytest.raises(ValueError, match="another board"):
            evaluation.evaluate(GAMES, other, BOARDS, 1, seed=1, progress=False)
        assert server.requests == 0


def test_a_refused_connection_is_an_invalid_move_not_a_crash():
    with serving({}) as server:
        url = server.url
    policy = api.APIPolicy(url, "scripted", retries=1, backoff=0.01, timeout=0.5)
    metrics, _ = evaluation.evaluate(GAMES, policy, BOARDS, 1, progress=False)
    assert metrics["valid_move_rate"] == 0 and policy.errors == BOARDS


def test_the_cli_sends_the_key_and_never_writes_it(tmp_path, monkeypatch, capsys):
    secret = "sk-test-not-a-real-key-1234"
    monkeypatch.setenv("JAXGYM_TEST_KEY", secret)
    out = tmp_path / "metrics.json"
    with serving({1: "<answer>(9, 9) (9, 9)</answer>"}) as server:
        code = evaluate.main(["--game", "swap", "--preset", "easy", "--api-base", server.url,
                              "--api-model", "scripted", "--api-key-env", "JAXGYM_TEST_KEY",
                              "--boards", str(BOARDS), "--steps", "1", "--json", str(out),
                              "--results", str(tmp_path / "r.jsonl")])
        assert server.auth == {"Bearer " + secret}
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["valid_move_rate"] == pytest.approx(5 / 6)
    assert metrics["api_requests"] == BOARDS and metrics["api_errors"] == 0
    assert metrics["policy"] == "api" and metrics["protocol"] == "jaxgym"
    printed = capsys.readouterr()
    for written in (printed.out, printed.err, out.read_text(), (tmp_path / "r.jsonl").read_text()):
        assert secret not in written
    assert secret not in repr(api.APIPolicy(server.url, "scripted", "JAXGYM_TEST_KEY"))


def test_reply_text_takes_only_text():
    assert api.reply_text({"choices": [{"message": {"content": "hi"}}]}) == "hi"
    for body in (None, [], {}, {"choices": []}, {"choices": [{"message": {"content": 3}}]},
                 {"choices": [{"message": None}]}):
        assert api.reply_text(body) == ""
    with pytest.raises(ValueError, match="concurrency"):
        api.APIPolicy("http://127.0.0.1:1/v1", "m", concurrency=0)


def test_the_paper_protocol_warms_2048_up_and_deals_ended_boards_afresh():
    games = episodes.GameSet.make("2048", "easy", "full", False, False)
    fresh = games.deal(episodes.eval_key(0), 4, 0)[0]
    warm = evaluation.warm_up(games.envs[0], fresh, jax.random.key(0), 100)
    filled = lambda s: (np.asarray(s.board) > 0).sum()  # noqa: E731
    assert filled(warm) > filled(fresh) and not np.asarray(warm.done).any()
    assert np.asarray(warm.step_count).tolist() == [0] * 4
    policy = evaluation.TextPolicy("random", tokenization.default())
    metrics, _ = evaluation.evaluate(games, policy, 4, 3, protocol="paper", progress=False)
    assert 0 <= metrics["hit_rate"] <= metrics["valid_move_rate"] <= 1
    # boards that are cleared come back fresh and playable: the expert scores on every move
    games = episodes.GameSet.make("shisensho", "easy", "full", False, False)
    expert = evaluation.TextPolicy("expert", tokenization.default())
    metrics, _ = evaluation.evaluate(games, expert, 2, 12, protocol="paper", progress=False)
    assert metrics["hit_rate"] == 1.0
    with pytest.raises(ValueError, match="protocol"):
        evaluation.evaluate(games, policy, 4, 1, protocol="nope")


def test_the_bench_server_plays_random_moves_through_the_cli(tmp_path):
    from bench import chat_server
    server = chat_server.make_server("swap", fail_every=7, max_requests=MAX_REQUESTS)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        out = tmp_path / "m.json"
        assert evaluate.main(["--game", "swap", "--api-base", url, "--api-model", "random",
                              "--protocol", "paper", "--boards", "4", "--steps", "5",
                              "--json", str(out)]) == 0
    finally:
        server.shutdown()
        server.server_close()
    metrics = json.loads(out.read_text())
    assert metrics["format_rate"] == 1.0 and metrics["api_errors"] == 0  # 500s were retried
    assert metrics["api_requests"] == 20 and 0 <= metrics["hit_rate"] <= metrics["valid_move_rate"]
