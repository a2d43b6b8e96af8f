"""Quality control in the real app, driven by Streamlit's AppTest on a real SQLite store: the
Review page (reviewers and admins only; disputes, every judgement with its rationale, a recorded
decision the export takes), the Dashboard's annotator view with its CSV and lifting a pause, the
pause message on the Label page, and gold pairs looking like any other pair there."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dev.app_driver import APP, TIMEOUT
from dev.app_driver import signed_in as _signed_in
from prefkit.annotate.gold import GoldAnswer, GoldItem
from prefkit.annotate.render import safe_markdown
from prefkit.annotate.store import Store
from prefkit.data.schema import Judgement, Pair, Prompt, Response, Strength
from prefkit.data.sources import Location


@dataclass
class World:
    store: Store
    pairs: list[Pair]
    gold: list[Pair]
    tokens: dict[str, str]


def _pair(i: int, tag: str = "") -> Pair:
    return Pair(
        Prompt(f"Câu hỏi {tag}{i}: vì sao?"), Response(f"Trả lời một {tag}{i}"), Response(f"Trả lời hai {tag}{i}")
    )


@pytest.fixture
def world(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> World:
    store = Store.open(sqlite_url)
    pairs, gold = [_pair(i) for i in range(6)], [_pair(i, "vàng ") for i in range(4)]
    items = [GoldItem(g, GoldAnswer("a", Strength.BETTER), Location("gold.jsonl", i + 1)) for i, g in enumerate(gold)]
    store.import_gold("demo", items, pairs=pairs, overlap=2)
    store.set_quality("demo", gold_rate=0.0)
    tokens = {"alice": store.add_user("alice", admin=True)}
    for name in ("bob", "chi", "rev"):
        tokens[name] = store.add_user(name)
    store.set_role("rev", "reviewer")
    monkeypatch.setenv("PREFKIT_DB", sqlite_url)
    return World(store, pairs, gold, tokens)


def _plain(markdown: str) -> str:
    """Text the app escaped for Markdown (`escape_text`), as shown."""
    return markdown.replace("\\", "")


def _judge(store: Store, user: str, point: int, rationale: str | None = None) -> Pair:
    """`user` judges the pair they are given: `point` in generation order (-4..4, negative: a)."""
    a = store.claim("demo", user)
    pair = a.pair
    preferred = None if point == 0 else (pair.a.id if point < 0 else pair.b.id)
    strength = Strength.NEGLIGIBLY_BETTER if point == 0 else Strength.from_level(abs(point) - 1)
    store.submit(a.id, user, Judgement(pair.pair_id, user, preferred, strength, rationale=rationale))
    return pair


def test_reviewer_settles_a_disagreement_and_the_export_takes_it(world: World, tmp_path: Path) -> None:
    s = world.store
    disputed = _judge(s, "bob", -3, "A giải thích rõ hơn")
    assert _judge(s, "chi", 2, "B ngắn gọn") == disputed  # opposite sides
    agreed = _judge(s, "bob", -3)
    assert _judge(s, "chi", -2) == agreed  # one step apart: no dispute

    annotator = _signed_in(world.tokens["bob"])
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        annotator.switch_page("ui/review.py")

    at = _signed_in(world.tokens["rev"])
    at.switch_page("ui/review.py").run()
    assert not at.exception, at.exception
    assert at.selectbox(key="review-pair").options == [f"{disputed.pair_id} · 2 judgements · opposite sides"]
    text = "\n".join(m.value for m in at.markdown)
    assert "**bob**: A better" in text and "**chi**: B slightly better" in text
    assert "A giải thích rõ hơn" in text and "B ngắn gọn" in text
    assert safe_markdown(disputed.a.text) in text and safe_markdown(disputed.b.text) in text

    at.button(key="review-record").click().run()  # nothing chosen: refused, nothing recorded
    assert "Choose a final decision first" in at.error[0].value and s.reviews("demo") == {}
    at.radio(key=f"review-choice-{disputed.pair_id}").set_value(3).run()
    at.text_area(key=f"review-note-{disputed.pair_id}").input("B đúng trọng tâm").run()
    at.button(key="review-record").click().run()
    assert not at.exception
    assert "Decision recorded: B better." in _plain(at.success[0].value)
    review = s.reviews("demo")[disputed.pair_id]
    assert (review.reviewer, review.preferred, review.strength, review.note) == (
        "rev",
        disputed.b.id,
        Strength.BETTER,
        "B đúng trọng tâm",
    )
    assert "1 decided, 0 to go" in "\n".join(c.value for c in at.caption)

    report = s.export("demo", tmp_path / "out", jsonl=True)
    assert report.decided_by == {"review": 1, "mean": 1}
    from datasets import load_from_disk

    rows = {r["id"]: r for split in load_from_disk(str(tmp_path / "out")).values() for r in split}
    assert (rows[disputed.pair_id]["chosen"], rows[disputed.pair_id]["decided_by"]) == (disputed.b.text, "review")
    assert rows[agreed.pair_id]["decided_by"] == "mean"
    assert "1 by a reviewer" in (tmp_path / "out" / "README.md").read_text()

    at.button(key="review-clear").click().run()
    assert s.reviews("demo") == {} and "Decision taken back" in _plain(at.success[0].value)


def test_review_page_for_admins_and_refused_on_its_own_to_others(world: World) -> None:
    admin = _signed_in(world.tokens["alice"])
    admin.switch_page("ui/review.py").run()
    assert not admin.exception and "Nothing to review" in _plain(admin.success[0].value)
    bob = _signed_in(world.tokens["bob"])
    direct = AppTest.from_file(APP.parent / "ui" / "review.py", default_timeout=TIMEOUT)
    direct.query_params["s"] = bob.query_params["s"]
    direct.run()
    assert [e.value for e in direct.error] == ["This page is for reviewers and admins."]
    assert not direct.button and not direct.radio


def test_dashboard_annotator_view_csv_and_lifting_a_pause(world: World) -> None:
    s = world.store
    s.set_quality("demo", qualify=2, qualify_accuracy=1.0)
    exp = {g.pair_id: g.a.id for g in world.gold}
    for _ in range(2):  # bob gets two gold pairs first and gets one wrong
        a = s.claim("demo", "bob")
        wrong = a.pair.other(exp[a.pair.pair_id]).id
        s.submit(a.id, "bob", Judgement(a.pair.pair_id, "bob", wrong, "better", shown_order=a.shown_order))

    bob = _signed_in(world.tokens["bob"])  # the Label page tells him, and shows no pair
    assert "not passed this project's qualification" in _plain(bob.error[0].value)
    assert not [b for b in bob.button if b.key and b.key.startswith("choice")]

    admin = _signed_in(world.tokens["alice"])
    admin.switch_page("ui/dashboard.py").run()
    assert not admin.exception, admin.exception
    (view,) = [d.value for d in admin.dataframe if "gold_side" in d.value.columns]
    row = view.set_index("annotator").loc["bob"]
    assert (row["status"], row["judgements"], row["gold"], row["gold_side"]) == ("paused (qualification)", 2, 2, 0.0)
    assert admin.get("download_button")
    assert "4 gold pairs" in "\n".join(c.value for c in admin.caption)
    # His two answers are gold only: the Per annotator table (ordinary pairs) leaves him out and
    # says so; the quality table counts them.
    (per,) = [d.value for d in admin.dataframe if "today" in d.value.columns]
    assert "bob" not in set(per["annotator"])
    assert any(c.value.startswith("Ordinary pairs only.") for c in admin.caption)
    assert admin.selectbox(key="lift-who").options == ["bob"]
    admin.button(key="lift-pause").click().run()
    assert s.quality_status("demo", "bob").state == "ok"

    # Export: bob's two judgements are on gold pairs, which stay out unless asked for.
    admin.button(key="export").click().run()
    assert "has no judgements to export" in admin.session_state["export-result"][1]
    admin.checkbox(key="export-include-gold").check().run()
    admin.button(key="export").click().run()
    _, summary, _ = admin.session_state["export-result"]
    assert (summary["exported"], summary["decided_by"]) == (4, {"gold": 4})

    bob.run()
    assert not bob.error and [b for b in bob.button if b.key and b.key.startswith("choice")]


def test_review_and_lift_after_the_sign_in_ended_record_nothing(world: World) -> None:
    """The Review page's decision and the Dashboard's "Lift the pause" are button callbacks, which
    run before the page checks the sign-in: once the sign-in has ended they record nothing, and the
    sign-in form says so (as the Label and My work pages' buttons do)."""
    from sqlalchemy import update

    from prefkit.annotate.tables import SessionRow

    s = world.store
    disputed = _judge(s, "bob", -3)
    _judge(s, "chi", 2)
    s.set_quality("demo", qualify=2, qualify_accuracy=1.0)
    s.add_user("dan")
    exp = {g.pair_id: g.a.id for g in world.gold}
    for _ in range(2):  # dan fails the qualification: paused, so the Dashboard offers the lift
        a = s.claim("demo", "dan")
        wrong = a.pair.other(exp[a.pair.pair_id]).id
        s.submit(a.id, "dan", Judgement(a.pair.pair_id, "dan", wrong, "better", shown_order=a.shown_order))
    rev = _signed_in(world.tokens["rev"])
    rev.switch_page("ui/review.py").run()
    rev.radio(key=f"review-choice-{disputed.pair_id}").set_value(3).run()
    admin = _signed_in(world.tokens["alice"])
    admin.switch_page("ui/dashboard.py").run()
    assert admin.selectbox(key="lift-who").options == ["dan"]
    with s.engine.begin() as c:  # every sign-in runs out while the pages are on screen
        c.execute(update(SessionRow).values(expires_at=s.now()))

    rev.button(key="review-record").click().run()
    assert not rev.exception and s.reviews("demo") == {}
    assert "that last action was not recorded" in "\n".join(w.value for w in rev.warning)
    assert [b.label for b in rev.button] == ["Sign in"]
    admin.button(key="lift-pause").click().run()
    assert not admin.exception and "that last action was not recorded" in "\n".join(w.value for w in admin.warning)
    assert s.quality_status("demo", "dan").state != "ok"


def _structure(at: AppTest) -> list[tuple[str, str | None]]:
    """What the Label page shows, without the texts of the pair: element types and labels/keys."""
    out: list[tuple[str, str | None]] = [("markdown", str(len(at.markdown)))]
    for kind in ("button", "checkbox", "text_area", "radio", "selectbox", "caption"):
        for e in getattr(at, kind):
            key = getattr(e, "key", None)
            out.append((kind, key.rsplit("-", 1)[0] if key and key[-1].isdigit() else getattr(e, "label", None)))
    return out


def test_a_gold_pair_looks_like_any_other_on_the_label_page(world: World) -> None:
    world.store.set_quality("demo", qualify=1, qualify_accuracy=0.0)
    gold_ids = {g.pair_id for g in world.gold}
    at = _signed_in(world.tokens["chi"])
    first = world.store.claim("demo", "chi")
    assert first.pair.pair_id in gold_ids  # the qualification comes first
    gold_page = _structure(at)
    (button,) = [b for b in at.button if b.key and b.key.startswith("choice-3-")]
    button.click().run()
    second = world.store.claim("demo", "chi")
    assert second.pair.pair_id not in gold_ids
    assert _structure(at) == gold_page
