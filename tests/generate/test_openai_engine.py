"""The `openai` engine against a real OpenAI-compatible server on loopback: `transformers serve`.

The server is the one transformers ships (its `serving` extra: fastapi, uvicorn, openai), started
by the test on a free 127.0.0.1 port with the tiny model, and stopped at the end. The served copy
of the model samples (`do_sample: true` in its generation config, as released chat models ship),
so the per-request temperature and seed decide the answer; temperature 0 is greedy.
"""

from __future__ import annotations

import http.server
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from dev.served import ServeUnavailable, free_port, transformers_serve
from prefkit.core.errors import ConfigError
from prefkit.data.readers import read_pairs
from prefkit.generate.chat import format_prompt
from prefkit.generate.config import GenerateConfig
from prefkit.generate.engines.base import Request
from prefkit.generate.engines.openai_api import OpenAIEngine, ServerError, completion_body
from prefkit.generate.run import generate_pairs


@pytest.fixture(scope="module")
def served_model(sampling_model) -> Path:
    return sampling_model


@pytest.fixture(scope="module")
def server(served_model, tmp_path_factory):
    """`transformers serve MODEL` on a free loopback port; yields its /v1 base URL."""
    log = tmp_path_factory.mktemp("serve-log") / "serve.log"
    try:
        with transformers_serve(served_model, log, tmp_path_factory.mktemp("hub-cache")) as base:
            yield base
    except ServeUnavailable as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def engine(server, served_model):
    return OpenAIEngine(str(served_model), base_url=server, concurrency=4, retries=2, backoff=0.05, timeout=120)


def _prompts(tokenizer, questions):
    return [format_prompt(tokenizer, q) for q in questions]


def test_greedy_answers_are_the_local_engines_in_request_order(engine, hf_engine, questions):
    """Temperature 0 is greedy on both: the served answers are exactly what the HF engine computes
    locally on the same weights, each in its own request's slot although 4 run at once."""
    prompts = _prompts(engine.tokenizer, questions[:6])
    served = engine.generate([Request(p, temperature=0, max_tokens=6) for p in prompts])
    local = hf_engine.generate([Request(p, temperature=0, max_tokens=6) for p in prompts])
    assert [r.completions[0].text for r in served] == [r.completions[0].text for r in local]
    assert len({r.completions[0].text for r in served}) > 1  # the prompts give different answers
    for r in served:
        c = r.completions[0]
        assert c.finish_reason in ("stop", "length") and 1 <= c.n_tokens <= 6 and c.seed is None


def test_temperature_and_seed_are_per_request(engine, questions):
    prompt = _prompts(engine.tokenizer, questions[:1])[0]
    seeded = [Request(prompt, temperature=1.5, max_tokens=8, seed=s) for s in (11, 11, 12, 13, 14)]
    texts = [r.completions[0].text for r in engine.generate(seeded)]
    # (the server seeds torch per request; one at a time so that no other request's seed interleaves)
    one = OpenAIEngine(engine.model, base_url=engine.base_url, concurrency=1)
    again = [r.completions[0].text for r in one.generate(seeded)]
    assert again[0] == again[1]  # same seed, same sample
    assert len(set(again[1:])) >= 3  # other seeds, other samples
    assert len({t for t in texts}) >= 3
    greedy = one.generate([Request(prompt, temperature=0, max_tokens=8, seed=s) for s in (1, 2)])
    assert greedy[0].completions[0].text == greedy[1].completions[0].text  # temperature 0 ignores the seed
    assert greedy[0].completions[0].text not in again  # ... and differs from the hot samples

    many = one.generate([Request(prompt, temperature=1.5, max_tokens=8, seed=11, n=3)])[0]
    assert [c.seed for c in many.completions] == [11, 12, 13]  # sample i uses seed + i, as on every engine
    assert [c.text for c in many.completions] == [again[0], again[2], again[3]]


def test_a_generate_run_on_the_served_model_resumes_to_the_same_pairs(server, served_model, prompts_file, tmp_path):
    def cfg(out: Path, **kw) -> GenerateConfig:
        values = dict(
            prompts=str(prompts_file),
            out=str(out),
            models=[str(served_model)],
            temperatures=[0.7, 1.2],
            max_tokens=6,
            shard_size=2,
            plan="all_pairs",
            engine="openai",
            base_url=server,
            concurrency=1,
            progress=False,
            seed=5,
        )
        return GenerateConfig(**{**values, **kw})

    straight = generate_pairs(cfg(tmp_path / "straight"))
    assert straight.report["complete"] and straight.report["pairs"] == 4

    first = generate_pairs(cfg(tmp_path / "resumed", limit=2))  # stops after one shard, like a killed run
    assert first.report["shards"] == ["shard-00000.parquet"]
    resumed = generate_pairs(cfg(tmp_path / "resumed"), resume=True)
    assert resumed.report["shards"] == ["shard-00000.parquet", "shard-00001.parquet"]

    def texts(out):
        return [(p.pair_id, p.a.text, p.b.text, p.a.seed, p.b.seed) for p in read_pairs(out)]

    assert texts(tmp_path / "resumed") == texts(tmp_path / "straight")
    pairs = read_pairs(tmp_path / "straight")
    assert all(p.a.temperature == 0.7 and p.b.temperature == 1.2 for p in pairs)
    assert any(p.a.text != p.b.text for p in pairs)


class _FlakyProxy(http.server.ThreadingHTTPServer):
    """Answers the first `fail` POSTs with 503, then forwards each request to the real server."""

    def __init__(self, upstream: str, fail: int) -> None:
        self.upstream, self.fail, self.seen = upstream, fail, 0
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.seen += 1
            failing = self.server.seen <= self.server.fail
        if failing:
            self.send_response(503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": {"message": "overloaded"}}')
            return
        req = urllib.request.Request(
            self.server.upstream + self.path.removeprefix("/v1"),
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=120) as r:
            payload, status = r.read(), r.status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


def test_overloaded_answers_are_retried(engine, server, questions):
    proxy = _FlakyProxy(server, fail=3)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        flaky = OpenAIEngine(
            engine.model,
            base_url=f"http://127.0.0.1:{proxy.server_address[1]}/v1",
            concurrency=1,
            retries=3,
            backoff=0.01,
        )
        prompts = _prompts(engine.tokenizer, questions[:2])
        got = flaky.generate([Request(p, temperature=0, max_tokens=5) for p in prompts])
        direct = engine.generate([Request(p, temperature=0, max_tokens=5) for p in prompts])
        assert [r.completions[0].text for r in got] == [r.completions[0].text for r in direct]
        assert flaky.stats["retries"] == 3

        proxy.seen, proxy.fail = 0, 10  # more 503s than tries: the run stops and says why
        with pytest.raises(ServerError, match=r"no answer after 4 tries \(last: HTTP 503: overloaded\)"):
            flaky.generate([Request(prompts[0], temperature=0, max_tokens=5)])
    finally:
        proxy.shutdown()
        proxy.server_close()


def test_a_refused_request_fails_at_once_with_the_servers_reason(engine, server):
    wrong = OpenAIEngine(engine.model, base_url=server, tokenizer=engine.model, retries=5, backoff=5)
    wrong.model = "no-such-model"
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"HTTP 400: .*pinned to"):
        wrong.generate([Request("hello", max_tokens=2)])
    assert time.monotonic() - started < 5  # not retried


def test_no_server_is_a_clear_error(served_model):
    port = free_port()  # nothing listens there
    eng = OpenAIEngine(str(served_model), base_url=f"http://127.0.0.1:{port}/v1", retries=1, backoff=0.01)
    with pytest.raises(ServerError, match=rf"127.0.0.1:{port}/v1/completions: no answer after 2 tries"):
        eng.generate([Request("hello", max_tokens=2)])


def test_request_bodies_and_settings(served_model, monkeypatch):
    r = Request("hi", temperature=0.7, top_p=0.9, max_tokens=3, seed=40, n=2)
    assert completion_body("m", r, 1) == {
        "model": "m",
        "prompt": "hi",
        "max_tokens": 3,
        "temperature": 0.7,
        "top_p": 0.9,
        "n": 1,
        "stream": False,
        "seed": 41,
    }
    assert "seed" not in completion_body("m", Request("hi"), 0)
    with pytest.raises(ConfigError, match="adapter"):
        OpenAIEngine(str(served_model), "some/adapter")
    with pytest.raises(ConfigError, match="base_url must start with http"):
        OpenAIEngine(str(served_model), base_url="localhost:8000")
    with pytest.raises(ConfigError, match="--set tokenizer=PATH"):
        OpenAIEngine("served-name-without-local-tokenizer", base_url="http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("MY_KEY", "sk-test")
    eng = OpenAIEngine(str(served_model), api_key_env="MY_KEY", retries=0)
    assert eng.base_url == "http://127.0.0.1:9/v1" and eng.api_key == "sk-test"
    with pytest.raises(ConfigError, match="concurrency must be >= 1"):
        GenerateConfig(concurrency=0)
