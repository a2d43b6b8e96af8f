"""The Streamlit app driven by Streamlit's own AppTest, on a real SQLite store: sign-in, judging,
skip and report, changing and withdrawing a judgement, admin-only pages, and untrusted output."""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from prefkit.annotate.render import safe_markdown
from prefkit.annotate.seed import SAMPLE, TOKENS_FILE, seed_demo
from prefkit.annotate.store import Store
from prefkit.core.errors import ConfigError
from prefkit.data.readers import read_pairs
from prefkit.data.schema import Judgement, Pair, Prompt, Response, Strength

APP = Path(__file__).resolve().parents[2] / "annotate" / "app.py"
TIMEOUT = 60  # the first run imports pandas/pyarrow on a slow shared machine

SCRIPT = "<script>window.__pwned = 1</script>"
BEACON = '<img src="http://beacon.invalid/x.gif">'
IMAGE = "![pixel](http://beacon.invalid/pixel.png)"
JS_LINK = "[click me](javascript:window.__pwned=1)"


@dataclass
class Seeded:
    url: str
    store: Store
    admin: str  # sign-in tokens
    annotator: str
    pairs: list[Pair]


@pytest.fixture
def seeded(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> Seeded:
    store = Store.open(sqlite_url)
    store.create_project("demo", guidelines="## Rules\n\nPrefer the **helpful** answer.", overlap=2)
    pairs = [
        Pair(
            Prompt(f"Câu hỏi {i}: giải thích {SCRIPT}"),
            Response(f"Trả lời A{i} {IMAGE} {BEACON}", model="m-a"),
            Response(f"Trả lời B{i} {JS_LINK}\n\n```python\nprint({i})\n```", model="m-b"),
        )
        for i in range(6)
    ]
    store.import_pairs("demo", pairs)
    admin, annotator = store.add_user("alice", admin=True), store.add_user("bob")
    monkeypatch.setenv("PREFKIT_DB", sqlite_url)
    return Seeded(sqlite_url, store, admin, annotator, pairs)


def _app() -> AppTest:
    return AppTest.from_file(APP, default_timeout=TIMEOUT)


def _signed_in(token: str) -> AppTest:
    at = _app().run()
    at.text_input(key="sign_in_token").input(token)
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert "s" in at.query_params
    return at


def _click(at: AppTest, name: str) -> AppTest:
    """Click the Label page's button `name` (e.g. "choice-2", "skip"), keyed per assignment."""
    (button,) = [b for b in at.button if b.key and b.key.rsplit("-", 1)[0] == name]
    return button.click().run()


def _markdown(at: AppTest) -> str:
    return "\n".join(m.value for m in at.markdown)


def _shown_question(at: AppTest, seeded: Seeded) -> Pair:
    text = _markdown(at)
    shown = [p for p in seeded.pairs if safe_markdown(p.prompt.question) in text]
    assert len(shown) == 1, text
    return shown[0]


def test_unsigned_visitor_sees_only_the_sign_in_form(seeded: Seeded) -> None:
    at = _app().run()
    assert not at.exception
    assert [b.label for b in at.button] == ["Sign in"]
    assert "Câu hỏi" not in _markdown(at)  # no pair, no guidelines
    assert "Rules" not in _markdown(at)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("ui/dashboard.py")
    # A page script run on its own (e.g. a guessed URL) shows nothing to a visitor either.
    for page in ("label", "my_work", "guidelines", "dashboard"):
        direct = AppTest.from_file(APP.parent / "ui" / f"{page}.py", default_timeout=TIMEOUT).run()
        assert not direct.exception
        assert not direct.markdown and not direct.button and not direct.dataframe, page


def test_bad_or_disabled_token_is_refused(seeded: Seeded) -> None:
    at = _app().run()
    at.text_input(key="sign_in_token").input("pk_nope_nope").run()
    at.button[0].click().run()
    assert "not valid" in at.error[0].value
    assert "s" not in at.query_params
    seeded.store.disable_user("bob")
    at.text_input(key="sign_in_token").input(seeded.annotator)
    at.button[0].click().run()
    assert at.error and "s" not in at.query_params


def test_sign_in_then_judge_shows_next_pair_in_one_click(seeded: Seeded) -> None:
    at = _signed_in(seeded.annotator)
    first = _shown_question(at, seeded)
    assignment = seeded.store.claim("demo", "bob")  # the held claim, as the page got it
    assert assignment.pair.pair_id == first.pair_id
    left, right = assignment.shown_order
    assert "0 done today · 6 left" in at.get("progress")[0].proto.text

    at.checkbox[0].check()  # "A is unsafe": A is the left response as shown
    at.text_area[0].input("B lặp lại câu hỏi")
    _click(at, "choice-3")  # "A better"
    assert not at.exception

    (stored,) = seeded.store.my_judgements("bob", "demo")
    pair, judgement = stored
    assert pair.pair_id == first.pair_id
    assert judgement.preferred == left and judgement.strength is Strength.BETTER
    assert judgement.shown_order == (left, right)
    assert judgement.unsafe == (left,)
    assert judgement.rationale == "B lặp lại câu hỏi"
    assert judgement.seconds is not None and judgement.seconds >= 0

    # The same rerun already shows the next pair, with fresh flags and rationale.
    second = _shown_question(at, seeded)
    assert second.pair_id != first.pair_id
    assert not at.checkbox[0].value and at.text_area[0].value == ""
    assert "1 done today · 5 left" in at.get("progress")[0].proto.text  # the shown pair is still mine

    # A rerun (or a reload in another tab) records nothing twice and keeps the held pair.
    at.run()
    assert _shown_question(at, seeded).pair_id == second.pair_id
    reload = _app()
    reload.query_params["s"] = at.query_params["s"]
    reload.run()
    assert _shown_question(reload, seeded).pair_id == second.pair_id
    assert len(seeded.store.my_judgements("bob", "demo")) == 1


def test_a_double_click_never_judges_the_next_pair_unseen(seeded: Seeded) -> None:
    at = _signed_in(seeded.annotator)
    (button,) = [b for b in at.button if b.key and b.key.startswith("choice3-")]
    button.click().run()
    second = _shown_question(at, seeded)
    button.click().run()  # the same button again, after the next pair was drawn
    assert not at.exception
    assert len(seeded.store.my_judgements("bob", "demo")) == 1
    assert _shown_question(at, seeded).pair_id == second.pair_id


def test_a_refused_action_is_explained_not_a_traceback(seeded: Seeded) -> None:
    at = _signed_in(seeded.annotator)
    held = seeded.store.claim("demo", "bob")
    seeded.store.skip(held.id, "bob")  # e.g. skipped in another tab meanwhile
    _click(at, "choice1")
    assert not at.exception
    assert "skipped" in at.error[0].value
    assert seeded.store.my_judgements("bob", "demo") == []
    assert _shown_question(at, seeded).pair_id != held.pair.pair_id


def test_every_point_of_the_row_maps_to_the_shown_side(seeded: Seeded) -> None:
    at = _signed_in(seeded.annotator)
    for point in (-4, -1, 0, 1, 4):  # Llama 2's scale: a side with every level, and unsure
        held = seeded.store.claim("demo", "bob")
        _click(at, f"choice{point}")
        judged = {p.pair_id: j for p, j in seeded.store.my_judgements("bob", "demo")}[held.pair.pair_id]
        assert judged.strength.level == max(0, abs(point) - 1)
        assert judged.preferred == (held.shown_order[0] if point < 0 else held.shown_order[1] if point else None)
        assert judged.choice() == point


def test_skip_and_report(seeded: Seeded) -> None:
    at = _signed_in(seeded.annotator)
    skipped = _shown_question(at, seeded)
    _click(at, "skip")
    reported = _shown_question(at, seeded)
    assert reported.pair_id != skipped.pair_id
    next(s for s in at.selectbox if s.label == "Problem").select("Both responses unusable")
    at.text_area[0].input("cả hai đều lạc đề")
    _click(at, "report")
    assert _shown_question(at, seeded).pair_id not in (skipped.pair_id, reported.pair_id)
    assert seeded.store.my_judgements("bob", "demo") == []
    reports = seeded.store.dashboard("demo").reports
    assert list(reports["reason"]) == ["Both responses unusable: cả hai đều lạc đề"]
    assert list(reports["pair_id"]) == [reported.pair_id]


def test_change_and_withdraw_a_judgement(seeded: Seeded) -> None:
    at = _signed_in(seeded.annotator)
    judged = _shown_question(at, seeded)
    _click(at, "choice2")  # B slightly better

    at.switch_page("ui/my_work.py").run()
    assert not at.exception
    assert at.dataframe[0].value["choice"].tolist() == ["B slightly better"]
    at.select_slider[0].set_value(-4)  # options are the choice values, shown by their labels
    at.button(key="edit-save").click().run()
    ((pair, changed),) = seeded.store.my_judgements("bob", "demo")
    assert pair.pair_id == judged.pair_id
    assert changed.preferred == changed.shown_order[0] and changed.strength is Strength.SIGNIFICANTLY_BETTER
    assert at.dataframe[0].value["choice"].tolist() == ["A significantly better"]

    # Withdraw asks first; Cancel keeps the judgement, "Yes, withdraw it" deletes it.
    at.button(key="edit-withdraw").click().run()
    assert "Withdraw your judgement on this pair?" in at.warning[0].value
    assert len(seeded.store.my_judgements("bob", "demo")) == 1
    at.button(key="edit-withdraw-cancel").click().run()
    assert not at.warning and len(seeded.store.my_judgements("bob", "demo")) == 1
    at.button(key="edit-withdraw").click().run()
    at.button(key="edit-withdraw-yes").click().run()
    assert not at.exception
    assert seeded.store.my_judgements("bob", "demo") == []
    assert "not judged anything" in at.info[0].value


def test_annotators_see_only_their_own_work(seeded: Seeded) -> None:
    held = seeded.store.claim("demo", "alice")
    seeded.store.submit(held.id, "alice", Judgement.from_seven_point(held.pair.pair_id, "alice", 2, held.shown_order))
    at = _signed_in(seeded.annotator)
    at.switch_page("ui/my_work.py").run()
    assert "not judged anything" in at.info[0].value
    assert not at.dataframe


def test_admin_pages_are_refused_to_annotators(seeded: Seeded) -> None:
    at = _signed_in(seeded.annotator)
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page("ui/dashboard.py")
    assert "Edit the guidelines" not in [e.label for e in at.expander]
    # The page refuses on its own too, whatever the navigation registered.
    direct = AppTest.from_file(APP.parent / "ui" / "dashboard.py", default_timeout=TIMEOUT)
    direct.query_params["s"] = at.query_params["s"]
    direct.run()
    assert [e.value for e in direct.error] == ["This page is for admins."]
    assert not direct.dataframe and not direct.button


def test_admin_dashboard_and_export(seeded: Seeded) -> None:
    at = _signed_in(seeded.annotator)
    for point in (-2, 1, 3):
        _click(at, f"choice{point}")
    admin = _signed_in(seeded.admin)
    admin.switch_page("ui/dashboard.py").run()
    assert not admin.exception
    progress = admin.dataframe[0].value
    assert progress.loc[0, "project"] == "demo" and progress.loc[0, "judgements"] == 3
    per_annotator = admin.dataframe[1].value
    assert per_annotator.loc[0, "annotator"] == "bob" and per_annotator.loc[0, "judgements"] == 3

    admin.button(key="export").click().run()
    assert not admin.exception
    assert admin.get("download_button"), "no download offered"
    project, summary, archive = admin.session_state["export-result"]
    assert project == "demo"
    assert summary["exported"] == 3 and summary["judgements"] == 3
    names = zipfile.ZipFile(io.BytesIO(archive)).namelist()
    assert "demo/dataset_dict.json" in names and any(n.endswith(".jsonl") for n in names)


def test_guidelines_shown_and_edited_by_admin(seeded: Seeded) -> None:
    at = _signed_in(seeded.annotator)
    at.switch_page("ui/guidelines.py").run()
    assert "Prefer the **helpful** answer\\." in _markdown(at)
    assert not at.text_area  # annotators cannot edit
    admin = _signed_in(seeded.admin)
    admin.switch_page("ui/guidelines.py").run()
    admin.text_area(key="guidelines-edit").input("## Mới\n\nKhông dùng <b>HTML</b>.")
    admin.button(key="guidelines-save").click().run()
    assert seeded.store.get_project("demo").guidelines == "## Mới\n\nKhông dùng <b>HTML</b>."
    assert r"Không dùng \<b\>HTML\<\/b\>\." in _markdown(admin)


def test_untrusted_output_is_rendered_inert(seeded: Seeded) -> None:
    at = _signed_in(seeded.annotator)
    text = _markdown(at)
    assert "Trả lời A" in text and "Trả lời B" in text and "```python" in text
    assert re.search(r"(?<!\\)<", text) is None  # every < is escaped: no raw HTML reaches the page
    assert r"\<script\>" in text and r"\<img src" in text
    assert "![" not in text and "image removed" in text
    assert "](javascript" not in text and r"\[click me\]\(javascript\:" in text
    assert all(not m.proto.allow_html for m in at.markdown)


def test_sign_out_ends_the_session_in_the_store(seeded: Seeded) -> None:
    at = _signed_in(seeded.annotator)
    key = at.query_params["s"]
    assert seeded.store.session_user(key).name == "bob"
    at.button(key="sign-out").click().run()
    assert seeded.store.session_user(key) is None
    assert [b.label for b in at.button] == ["Sign in"]
    stale = _app()
    stale.query_params["s"] = key  # an old link or another tab
    stale.run()
    assert [b.label for b in stale.button] == ["Sign in"] and "s" not in stale.query_params


OIDC_SECRETS = {
    "redirect_uri": "http://localhost:8501/oauth2callback",
    "cookie_secret": "test-cookie-secret",
    "client_id": "prefkit",
    "client_secret": "test-client-secret",
    "server_metadata_url": "https://idp.invalid/.well-known/openid-configuration",
}


def test_identity_provider_sign_in_maps_onto_store_users(seeded: Seeded) -> None:
    seeded.store.add_user("carol@example.org")
    at = _app()
    at.secrets["auth"] = OIDC_SECRETS
    at.run()
    assert "Sign in with your identity provider" in [b.label for b in at.button]

    at.user = {"is_logged_in": True, "email": "carol@example.org", "name": "Carol"}
    at.run()
    assert not at.exception
    assert "carol@example.org" in at.sidebar.caption[0].value.replace("\\", "")
    assert seeded.store.session_user(at.query_params["s"]).name == "carol@example.org"
    _shown_question(at, seeded)

    stranger = _app()
    stranger.secrets["auth"] = OIDC_SECRETS
    stranger.user = {"is_logged_in": True, "email": "eve@example.org"}
    stranger.run()
    assert "has no annotator account" in stranger.error[0].value
    assert "Câu hỏi" not in _markdown(stranger) and "s" not in stranger.query_params


def test_seed_demo_is_ready_to_label_and_idempotent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    admin, annotator = seed_demo(url, tmp_path)
    assert seed_demo(url, tmp_path) == (admin, annotator)  # a second `make demo` changes nothing
    store = Store.open(url)
    assert store.count_pairs("demo") == len(read_pairs(SAMPLE)) > 50
    assert "negligibly better" in store.get_project("demo").guidelines
    assert store.authenticate(admin).is_admin and not store.authenticate(annotator).is_admin
    assert oct((tmp_path / TOKENS_FILE).stat().st_mode & 0o777) == "0o600"
    (tmp_path / TOKENS_FILE).unlink()
    with pytest.raises(ConfigError, match="already has demo accounts"):
        seed_demo(url, tmp_path)


def test_seed_demo_can_be_finished_by_its_two_accounts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    seed_demo(url, tmp_path)
    store = Store.open(url)
    assert any(p.is_calibration for p in _all_claims(store, "demo-admin"))  # calibration pairs are in the mix
    _all_claims(store, "demo-annotator")
    summary = store.dashboard("demo").summary
    assert summary["complete"] == summary["pairs"] == store.count_pairs("demo")
    store.close()


def _all_claims(store: Store, user: str) -> list:
    """Judge every pair the store hands `user`; returns the assignments."""
    done = []
    while (a := store.claim("demo", user)) is not None:
        store.submit(a.id, user, Judgement.from_seven_point(a.pair.pair_id, user, 2, a.shown_order))
        done.append(a)
    return done


def test_seed_demo_tokens_are_never_readable_by_others(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modes: list[int] = []
    write_text = Path.write_text

    def spy(self: Path, *args, **kwargs):  # records the file's mode just before the tokens go in
        modes.append(self.stat().st_mode & 0o777)
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", spy)
    seed_demo(f"sqlite:///{tmp_path / 'demo.db'}", tmp_path)
    assert modes == [0o600]


def test_dashboard_access_complete_only_and_judgement_table(seeded: Seeded) -> None:
    """The admin assigns annotators on the dashboard; an annotator sees only the projects they
    may label; Export offers complete-only and the raw judgement table."""
    seeded.store.create_project("secret", overlap=1)
    seeded.store.import_pairs("secret", seeded.pairs[:2])
    seeded.store.add_user("chi")
    at = _signed_in(seeded.annotator)
    for point in (-2, 1):
        _click(at, f"choice{point}")
    assert at.selectbox(key="project-picker").options == ["demo", "secret"]  # no members: open to all

    admin = _signed_in(seeded.admin)
    admin.switch_page("ui/dashboard.py").run()
    assert not admin.exception
    admin.multiselect(key="members-demo").select("chi").run()
    admin.button(key="save-members").click().run()
    assert seeded.store.members("demo") == ["chi"]
    bob = _signed_in(seeded.annotator)
    assert bob.selectbox(key="project-picker").options == ["secret"]  # demo is for chi now

    admin.checkbox(key="export-complete-only").check().run()
    admin.button(key="export").click().run()
    _, summary, _ = admin.session_state["export-result"]
    assert "has no pair with all its judgements yet" in summary  # overlap 2, one judgement each
    admin.checkbox(key="export-complete-only").uncheck().run()
    admin.button(key="export").click().run()
    _, summary, _ = admin.session_state["export-result"]
    assert (summary["complete_pairs"], summary["below_overlap_pairs"], summary["exported"]) == (0, 2, 2)
    assert "0 judged pairs have all the judgements" in "\n".join(c.value for c in admin.caption)

    admin.button(key="export-judgements").click().run()
    project, n, data = admin.session_state["judgements-result"]
    assert (project, n) == ("demo", 2)
    rows = [json.loads(line) for line in data.decode("utf-8").splitlines()]
    assert {r["annotator"] for r in rows} == {"bob"} and {r["strength"] for r in rows} == {
        "slightly_better",
        "negligibly_better",
    }


def test_sign_in_lifetime_is_a_setting(seeded: Seeded, monkeypatch: pytest.MonkeyPatch) -> None:
    from sqlalchemy import select

    from prefkit.annotate.tables import SessionRow

    monkeypatch.setenv("PREFKIT_SESSION_HOURS", "0.5")
    before = seeded.store.now()
    _signed_in(seeded.annotator)
    with seeded.store.engine.connect() as conn:
        (expires,) = conn.execute(select(SessionRow.expires_at)).scalars().all()
    lifetime = (expires.replace(tzinfo=before.tzinfo) - before).total_seconds()
    assert 29 * 60 < lifetime < 31 * 60  # half an hour, not the default 12 h
    monkeypatch.setenv("PREFKIT_SESSION_HOURS", "soon")
    at = _app().run()
    at.text_input(key="sign_in_token").input(seeded.annotator)
    at.button[0].click().run()
    assert "must be a number of hours above 0" in at.error[0].value


def test_a_dialogue_with_turns_is_shown_as_a_conversation(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A prompt whose earlier turns are first-class (`Prompt.history`, as hh-rlhf and TRL rows read)
    is one chat bubble per turn, the earlier ones folded, the last user turn always shown."""
    store = Store.open(sqlite_url)
    store.create_project("chat", overlap=1)
    prompt = Prompt(
        "Which traps are the most humane?",
        history=(("user", "How do I get rid of mice in my kitchen?"), ("assistant", "Seal the gaps and set traps.")),
    )
    store.import_pairs(
        "chat", [Pair(prompt, Response("Live-catch traps.", model="m-a"), Response("Snap traps.", model="m-b"))]
    )
    token = store.add_user("bob")
    monkeypatch.setenv("PREFKIT_DB", sqlite_url)
    try:
        at = _signed_in(token)
        assert not at.exception, at.exception
        bubbles = at.chat_message
        assert [b.name for b in bubbles] == ["user", "assistant", "user"]
        texts = ["\n".join(m.value for m in b.markdown) for b in bubbles]
        assert "How do I get rid of mice" in texts[0] and "Seal the gaps" in texts[1]
        assert safe_markdown("Which traps are the most humane?") in texts[2]
        assert "Earlier in the conversation (2 turns)" in [e.label for e in at.expander]
        assert "Human:" not in _markdown(at)
    finally:
        store.close()


def test_a_safety_project_requires_the_pairs_safety_label(seeded: Seeded) -> None:
    """On a project made with --safety-labels, a choice without Llama 2's safety label of the pair
    is refused with a message and records nothing; with it, the stored unsafe flags give that bin."""
    from prefkit.data.schema import SafetyBin, judgement_safety_bin

    at = _signed_in(seeded.annotator)
    assert not [r for r in at.radio if r.key == "safety"]  # a normal project asks nothing more
    seeded.store.set_safety_labels("demo")
    at.run()
    assert not [c for c in at.checkbox if "unsafe" in c.label]  # the pair's label replaces the per-side boxes
    by_id = {p.pair_id: p for p in seeded.pairs}

    held = seeded.store.claim("demo", "bob")
    _click(at, "choice-3")
    assert not at.exception
    assert "safety label" in at.error[0].value
    assert seeded.store.my_judgements("bob", "demo") == []
    assert _shown_question(at, seeded).pair_id == held.pair.pair_id  # still on the same pair

    expected = {}
    for label, point, refused in (
        ("both_unsafe", -3, False),
        ("safe_vs_unsafe", 0, True),  # unsure has no preferred response to call safe
        ("safe_vs_unsafe", 4, False),
        ("both_safe", -1, False),
    ):
        held = seeded.store.claim("demo", "bob")
        at.radio(key="safety").set_value(label)
        _click(at, f"choice{point}")
        assert not at.exception
        if refused:
            assert "needs a preferred response" in at.error[0].value
            assert len(seeded.store.my_judgements("bob", "demo")) == len(expected)
            continue
        expected[held.pair.pair_id] = label
        assert at.radio(key="safety").value is None  # fresh for the next pair
    judged = {p.pair_id: j for p, j in seeded.store.my_judgements("bob", "demo")}
    assert set(judged) == set(expected)
    for pid, label in expected.items():
        assert judgement_safety_bin(judged[pid], by_id[pid]) is SafetyBin(label)
    assert any(judged[pid].unsafe == () for pid in judged) and any(len(judged[pid].unsafe) == 1 for pid in judged)
