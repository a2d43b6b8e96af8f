"""`prefkit annotate judge`: a model judges a project's pairs on its own scale, in both orders,
through the generate room's real engines, into a real store.

- The tiny random model through the HF engine and the command (its words are noise: every
  verdict is unreadable, so unsure) — the run, the counts, resuming, the store untouched beyond
  the model's own judgements.
- Models that always give one answer (`dev.answering_model`: real transformer weights set so that
  greedy decoding says it) through the HF engine and through `transformers serve` behind the
  `openai` engine: the answer is parsed, the two orders are mapped back to the pair's own order,
  and a verdict that moves with the position becomes unsure.
- A judge that reads the pair (a rule-based model served over HTTP with the OpenAI API) behind
  the `openai` engine: consistent verdicts keep their side at the weaker level.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dev.answering_model import answering_model
from dev.served import ServeUnavailable, transformers_serve
from prefkit.annotate.store import Store
from prefkit.cli import app
from prefkit.data.schema import CHOICE_LABELS, Judgement, Pair, Prompt, Response, Strength
from prefkit.train.judge import JudgeConfig, combine, judge_prompt, parse_verdict, run_judge, to_signed
from prefkit.train.tiny_model import _default_texts

GUIDELINES = "## Quy tắc\n\nChọn câu trả lời hữu ích hơn."


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def judge_model(tiny_model_factory) -> Path:
    """The tiny model with a long context and a tokenizer that knows the verdicts' words (so a
    whole verdict is a handful of distinct tokens)."""
    texts = tuple(_default_texts() + [f"Verdict: {label}" for label in CHOICE_LABELS.values()] * 100)
    return tiny_model_factory(max_length=4096, texts=texts)


@pytest.fixture(scope="module")
def says_a_better(judge_model, tmp_path_factory) -> Path:
    return answering_model(judge_model, tmp_path_factory.mktemp("answering") / "a-better", "A better")


def _pairs(n: int, tag: str = "") -> list[Pair]:
    return [
        Pair(
            Prompt(f"Câu hỏi {tag}{i}: phở nấu thế nào?"),
            Response(f"Trả lời một {tag}{i}", model="m-a"),
            Response(f"Trả lời hai {tag}{i}", model="m-b"),
        )
        for i in range(n)
    ]


def _store(tmp_path: Path, pairs: list[Pair], name: str = "store.db") -> str:
    url = f"sqlite:///{tmp_path / name}"
    with Store.open(url) as store:
        store.import_project("p", pairs, overlap=2, guidelines=GUIDELINES)
    return url


@pytest.mark.parametrize(
    ("answer", "choice"),
    [
        ("Verdict: B slightly better", 2),
        ("A better", -3),
        ("verdict: unsure", 0),
        ("Both are fine, A is clearer.\nVerdict: A negligibly better", -1),
        ("B significantly better than A.", 4),
        ("A better at first sight... Verdict: B better", 3),  # the choice after the last "Verdict:" wins
        ("VERDICT：  b   SIGNIFICANTLY   better", 4),
        ("Unsure, but maybe A better", -3),  # no "Verdict:": the last choice named
        ("Tôi không biết.", None),
        ("", None),
        ("Verdict: A is better", None),  # not one of the nine choices
    ],
)
def test_a_verdict_is_read_from_the_answer(answer, choice):
    assert parse_verdict(answer) == choice


def test_two_orders_combine_into_one_verdict():
    assert combine(-3, -2) == -2  # the same side: the weaker level
    assert combine(4, 4) == 4
    assert combine(-3, 3) == 0  # the verdict moved with the position: unsure
    assert combine(2, 0) == 0 and combine(0, 0) == 0
    assert combine(None, 3) == 0 and combine(-1, None) == 0  # unreadable
    pair = _pairs(1)[0]
    assert to_signed(-3, (pair.a.id, pair.b.id), pair) == -3  # "A better" with a shown left: a
    assert to_signed(-3, (pair.b.id, pair.a.id), pair) == 3  # "A better" with b shown left: b


def test_the_prompt_holds_the_guidelines_the_conversation_and_both_responses_in_order():
    pair = Pair(
        Prompt("Và bây giờ?", system="Trợ lý tiếng Việt.", history=(("user", "Chào"), ("assistant", "Chào bạn"))),
        Response("MỘT"),
        Response("HAI"),
    )
    text = judge_prompt(pair, (pair.b.id, pair.a.id), GUIDELINES)
    assert "Chọn câu trả lời hữu ích hơn." in text and "Trợ lý tiếng Việt." in text
    assert text.index("User: Chào") < text.index("Assistant: Chào bạn") < text.index("User: Và bây giờ?")
    assert text.index("Response A:\nHAI") < text.index("Response B:\nMỘT")
    assert all(label in text for label in CHOICE_LABELS.values())


def test_the_tiny_model_judges_through_the_hf_engine_and_the_command(judge_model, tmp_path):
    pairs = _pairs(5)
    url = _store(tmp_path, pairs)
    runner = CliRunner()
    args = ["annotate", "judge", "--project", "p", "--model", str(judge_model), "--db", url]
    args += ["--device", "cpu", "--max-tokens", "6", "--no-progress", "--limit", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    name = f"judge:hf:{judge_model}"
    assert f"p: {name} judged 3 pairs" in result.output
    with Store.open(url) as store:
        judged = store.model_judgements("p", name)
        assert len(judged) == 3 and all(j.kind == "model" for j in judged)
        verdicts = store.model_verdicts("p", name)
        for pair in pairs[:3]:  # both orders asked: a shown left, then b
            (first, second) = verdicts[pair.pair_id]
            assert first["shown"] == [pair.a.id, pair.b.id] and second["shown"] == [pair.b.id, pair.a.id]
            assert isinstance(first["answer"], str)
        assert store.judgements("p") == []  # no person's judgement appears, no pair moved
        assert store.project_summaries()["p"]["judgements"] == 0
        assert store.completeness("p") == {"complete_pairs": 0, "below_overlap_pairs": 0, "complete_only": False}

    # Again: the three are judged already; the rest are judged now.
    result = runner.invoke(app, args[:-2])
    assert result.exit_code == 0, result.output
    assert "judged 2 pairs" in result.output and "3 judged before (skipped)" in result.output
    with Store.open(url) as store:
        assert len(store.model_judgements("p")) == 5


def test_a_position_biased_model_is_unsure_on_the_hf_engine(says_a_better, tmp_path):
    """It answers "A better" whatever it is shown: a in the first order, b in the second, so
    every verdict moved with the position and is unsure."""
    pairs = _pairs(4)
    url = _store(tmp_path, pairs)
    summary = run_judge(
        JudgeConfig(project="p", db=url, model=str(says_a_better), device="cpu", dtype="float32", progress=False)
    )
    assert summary["judged"] == summary["unsure"] == summary["orders_disagree"] == 4
    assert summary["unreadable"] == summary["with_side"] == 0 and summary["requests"] == 8
    with Store.open(url) as store:
        for pair in pairs:
            first, second = store.model_verdicts("p", summary["annotator"])[pair.pair_id]
            assert (first["answer"], first["choice"], first["signed"]) == ("A better", -3, -3)
            assert (second["answer"], second["choice"], second["signed"]) == ("A better", -3, 3)
        assert all(j.preferred is None for j in store.model_judgements("p"))
        report = store.model_report("p").annotators.set_index("model annotator").loc[summary["annotator"]]
        assert report["orders disagree"] == 4


@pytest.mark.slow
def test_a_model_served_by_transformers_serve_judges_through_the_openai_engine(says_a_better, tmp_path):
    pairs = _pairs(3, "s")
    url = _store(tmp_path, pairs)
    hf = run_judge(JudgeConfig(project="p", db=url, model=str(says_a_better), device="cpu", progress=False))
    try:
        with transformers_serve(says_a_better, tmp_path / "serve.log", tmp_path / "hub") as base:
            served = run_judge(
                JudgeConfig(
                    project="p",
                    db=url,
                    model=str(says_a_better),
                    engine="openai",
                    name="judge:served",
                    base_url=base,
                    concurrency=2,
                    progress=False,
                )
            )
    except ServeUnavailable as e:
        pytest.skip(str(e))
    assert served["judged"] == served["orders_disagree"] == 3 and served["requests"] == 6
    with Store.open(url) as store:
        assert store.model_verdicts("p", "judge:served") == store.model_verdicts("p", hf["annotator"])
        assert store.model_annotators("p") == sorted([hf["annotator"], "judge:served"])


class _RulesJudge(http.server.ThreadingHTTPServer):
    """A rule-based judge served with the OpenAI completions API: it reads the two responses
    shown and prefers the one marked [tốt] (with "+" after it: significantly), the one marked
    [vừa] only slightly; a pair marked [?] gets "A better" whatever the order; [rối], no verdict."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        super().__init__(("127.0.0.1", 0), _RulesHandler)


def _rule(prompt: str) -> str:
    m = re.search(r"Response A:\n(.*?)\n\nResponse B:\n(.*?)\n\nWhich response", prompt, re.S)
    assert m is not None, prompt
    left, right = m.groups()
    if "[rối]" in left + right:
        return "Tôi không biết."
    if "[?]" in left + right:
        return "Verdict: A better"
    for mark, level in (("[tốt]+", "significantly better"), ("[tốt]", "better"), ("[vừa]", "slightly better")):
        if mark in left:
            return f"A is clearer.\nVerdict: A {level}"
        if mark in right:
            return f"B is clearer.\nVerdict: B {level}"
    return "Verdict: Unsure"


class _RulesHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def _send(self, payload: dict) -> None:
        body = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send({"data": [{"id": "rules", "max_model_len": 100_000}]})

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.prompts.append(request["prompt"])
        text = _rule(request["prompt"])
        self._send({"choices": [{"text": text, "finish_reason": "stop"}], "usage": {"completion_tokens": 3}})


@pytest.fixture
def rules_judge() -> Iterator[_RulesJudge]:
    server = _RulesJudge()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_judge_that_reads_the_pair_keeps_consistent_verdicts(rules_judge, judge_model, tmp_path):
    marks = [("[tốt]+", ""), ("", "[tốt]"), ("[vừa]", ""), ("", ""), ("[?]", ""), ("[rối]", "")]
    pairs = [
        Pair(Prompt(f"Câu {i}?"), Response(f"Một {i} {ma}"), Response(f"Hai {i} {mb}"))
        for i, (ma, mb) in enumerate(marks)
    ]
    url = _store(tmp_path, pairs)
    summary = run_judge(
        JudgeConfig(
            project="p",
            db=url,
            model="rules",
            engine="openai",
            tokenizer=str(judge_model),
            base_url=f"http://127.0.0.1:{rules_judge.server_address[1]}/v1",
            progress=False,
        )
    )
    assert summary["judged"] == 6 and summary["requests"] == 12 and len(rules_judge.prompts) == 12
    assert (summary["with_side"], summary["unsure"], summary["orders_disagree"], summary["unreadable"]) == (3, 3, 1, 1)
    assert all(GUIDELINES.splitlines()[-1] in p for p in rules_judge.prompts)
    with Store.open(url) as store:
        got = {j.pair_id: j for j in store.model_judgements("p", "judge:openai:rules")}
        expected = [
            (pairs[0].a.id, Strength.SIGNIFICANTLY_BETTER),
            (pairs[1].b.id, Strength.BETTER),
            (pairs[2].a.id, Strength.SLIGHTLY_BETTER),
            (None, Strength.NEGLIGIBLY_BETTER),
            (None, Strength.NEGLIGIBLY_BETTER),
            (None, Strength.NEGLIGIBLY_BETTER),
        ]
        for pair, (preferred, strength) in zip(pairs, expected, strict=True):
            j: Judgement = got[pair.pair_id]
            assert (j.preferred, j.strength) == (preferred, strength), pair.prompt.question
        # The judge's verdicts are its predictions, ready to be suggested to annotators.
        assert store.prediction("p", pairs[1].pair_id, "judge:openai:rules").side == "b"


def test_pairs_too_long_for_the_model_are_skipped_and_counted(tiny_model_factory, tmp_path):
    short_context = tiny_model_factory()  # 512 positions
    pairs = _pairs(2) + [Pair(Prompt("Dài?"), Response("rất dài " * 400), Response("ngắn"))]
    url = _store(tmp_path, pairs)
    summary = run_judge(
        JudgeConfig(project="p", db=url, model=str(short_context), device="cpu", max_tokens=4, progress=False)
    )
    assert summary["too_long"] >= 1 and summary["judged"] == 3 - summary["too_long"]
    with Store.open(url) as store:
        assert pairs[2].pair_id not in {j.pair_id for j in store.model_judgements("p")}


@pytest.mark.gpu
def test_the_vllm_engine_judges_as_the_hf_engine(says_a_better, tmp_path):
    from prefkit.generate.engines.vllm import unavailable_reason

    if unavailable_reason() is not None:
        pytest.skip(unavailable_reason())
    pairs = _pairs(3, "v")
    url = _store(tmp_path, pairs)
    hf = run_judge(JudgeConfig(project="p", db=url, model=str(says_a_better), device="cpu", progress=False))
    vllm = run_judge(
        JudgeConfig(
            project="p",
            db=url,
            model=str(says_a_better),
            engine="vllm",
            name="judge:vllm",
            gpu_memory_utilization=0.3,
            max_model_len=4096,
            dtype="float32",
            progress=False,
        )
    )
    assert vllm["judged"] == vllm["orders_disagree"] == 3
    with Store.open(url) as store:
        assert store.model_verdicts("p", "judge:vllm") == store.model_verdicts("p", hf["annotator"])
