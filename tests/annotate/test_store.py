"""The store on SQLite and PostgreSQL: import, users/tokens/sessions, the queue's rules, leases,
idempotent submits, my work, progress, dashboard and export."""

from __future__ import annotations

import contextlib
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from prefkit.annotate.store import LeaseLost, Progress, Store
from prefkit.annotate.tables import PairRow, UserRow
from prefkit.core.errors import ConfigError, DataError
from prefkit.data.schema import Judgement, Strength


@pytest.fixture
def store(db_url, clock):
    s = Store.open(db_url, clock=clock)
    yield s
    s.close()


def _judge(store: Store, project: str, user: str, point: int = -2, **kw) -> Judgement | None:
    a = store.claim(project, user)
    if a is None:
        return None
    j = Judgement.from_seven_point(a.pair.pair_id, user, point, a.shown_order, **kw)
    return store.submit(a.id, user, j)


def test_import_is_idempotent_and_round_trips(store, make_pairs):
    store.create_project("p")
    pairs = make_pairs(30)
    assert store.import_pairs("p", pairs).added == 30
    again = store.import_pairs("p", pairs + make_pairs(5, start=30) + make_pairs(2, start=30))
    assert (again.added, again.skipped) == (5, 32)
    assert store.count_pairs("p") == 35
    assert store.pairs("p")[:30] == pairs  # every field survives the database
    with pytest.raises(ConfigError, match="no project named 'nope'"):
        store.import_pairs("nope", pairs)


def test_project_settings_are_checked(store):
    store.create_project("p", guidelines="# Rules", overlap=3)
    assert store.get_project("p").calibration_overlap == 3  # default: the project's overlap
    with pytest.raises(ConfigError, match="already exists"):
        store.create_project("p")
    with pytest.raises(ConfigError, match="overlap must be at least 1"):
        store.create_project("q", overlap=0)
    with pytest.raises(ConfigError, match="calibration must be a share"):
        store.create_project("q", calibration=1.5)
    store.set_guidelines("p", "## New rules")
    assert [p.guidelines for p in store.list_projects()] == ["## New rules"]


def test_calibration_share_gets_more_judgements_and_comes_first(store, make_pairs):
    store.create_project("p", overlap=1, calibration=0.2, calibration_overlap=3, seed=7)
    store.import_pairs("p", make_pairs(500))
    with store.engine.connect() as c:
        cal = c.execute(select(PairRow.is_calibration, PairRow.required)).all()
    n_cal = sum(1 for is_cal, _ in cal if is_cal)
    assert 60 <= n_cal <= 140  # seeded 20 % share of 500
    assert all(req == (3 if is_cal else 1) for is_cal, req in cal)
    store.add_user("ann")
    assert store.claim("p", "ann").is_calibration


def test_tokens_are_stored_only_as_salted_hashes(store):
    t1 = store.add_user("alice", admin=True)
    t2 = store.add_user("bob")
    alice = store.authenticate(t1)
    assert alice is not None and alice.name == "alice" and alice.is_admin
    assert store.authenticate(t2).name == "bob"
    assert store.authenticate(t1[:-1] + ("x" if t1[-1] != "x" else "y")) is None
    assert store.authenticate("not a token") is None
    assert store.authenticate("") is None
    with store.engine.connect() as c:
        rows = c.execute(select(UserRow.token_key, UserRow.token_hash)).all()
    secrets = [t1.split("_", 2)[2], t2.split("_", 2)[2]]
    for _, stored in rows:
        assert stored.startswith("scrypt$")
        assert not any(s in stored for s in secrets)
    assert rows[0].token_hash.split("$")[4] != rows[1].token_hash.split("$")[4]  # distinct salts
    with pytest.raises(ConfigError, match="already exists"):
        store.add_user("alice")
    assert [(u.name, u.is_admin) for u in store.list_users()] == [("alice", True), ("bob", False)]


def test_sessions_and_disabling(store, clock, make_pairs):
    store.create_project("p")
    store.import_pairs("p", make_pairs(3))
    token = store.add_user("bob")
    key = store.start_session("bob")
    assert store.session_user(key).name == "bob"
    assert store.session_user("forged") is None
    held = store.claim("p", "bob")
    store.disable_user("bob")
    assert store.authenticate(token) is None
    assert store.session_user(key) is None
    with pytest.raises(ConfigError, match="disabled"):
        store.claim("p", "bob")
    with pytest.raises(ConfigError, match="disabled"):  # nor can they submit what they held
        store.submit(held.id, "bob", Judgement.from_seven_point(held.pair.pair_id, "bob", 1, held.shown_order))
    with store.engine.connect() as c:  # the disabled user's claim went back
        assert c.execute(select(PairRow.held).where(PairRow.pair_id == held.pair.pair_id)).scalar_one() == 0
    with pytest.raises(ConfigError, match="disabled"):
        store.start_session("bob")
    store.add_user("carol")
    k2 = store.start_session("carol")
    store.end_session(k2)
    assert store.session_user(k2) is None
    k3 = store.start_session("carol", ttl=timedelta(hours=1))
    clock.advance(3599)
    assert store.session_user(k3).name == "carol"
    clock.advance(2)  # signed out when the session runs out
    assert store.session_user(k3) is None


def test_claim_returns_the_held_pair_until_it_is_done(store, make_pairs):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(3))
    store.add_user("ann")
    first = store.claim("p", "ann")
    assert store.claim("p", "ann").id == first.id  # a rerun shows the same pair
    assert set(first.shown_order) == {first.pair.a.id, first.pair.b.id}
    assert (first.left.id, first.right.id) == first.shown_order
    seen = {first.pair.pair_id}
    store.submit(first.id, "ann", Judgement.from_seven_point(first.pair.pair_id, "ann", 3, first.shown_order))
    while (a := store.claim("p", "ann")) is not None:
        assert a.pair.pair_id not in seen
        seen.add(a.pair.pair_id)
        store.submit(a.id, "ann", Judgement.from_seven_point(a.pair.pair_id, "ann", 0, a.shown_order))
    assert len(seen) == 3


def test_overlap_needs_distinct_annotators(store, make_pairs):
    store.create_project("p", overlap=2)
    store.import_pairs("p", make_pairs(4))
    for u in ("a", "b", "c"):
        store.add_user(u)
    for _ in range(4):
        for u in ("a", "b", "c"):
            _judge(store, "p", u)
    js = store.judgements("p")
    assert len(js) == 8
    per_pair = Counter(j.pair_id for j in js)
    assert set(per_pair.values()) == {2}
    assert len({(j.pair_id, j.annotator) for j in js}) == 8
    assert all(store.claim("p", u) is None for u in ("a", "b", "c"))


def test_shown_order_is_randomised_and_recorded(store, make_pairs):
    store.create_project("p", overlap=1)
    pairs = make_pairs(60)
    store.import_pairs("p", pairs)
    store.add_user("ann")
    left_is_a = 0
    for _ in range(60):
        a = store.claim("p", "ann")
        left_is_a += a.shown_order[0] == a.pair.a.id
        j = store.submit(a.id, "ann", Judgement.from_seven_point(a.pair.pair_id, "ann", -1, a.shown_order))
        assert j.shown_order == a.shown_order and j.preferred == a.shown_order[0]
    assert 15 <= left_is_a <= 45


def test_stored_judgements_give_back_the_clicked_point(store, make_pairs):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(7))
    store.add_user("ann")
    clicked = {}
    for point in range(-3, 4):
        a = store.claim("p", "ann")
        store.submit(a.id, "ann", Judgement.from_seven_point(a.pair.pair_id, "ann", point, a.shown_order))
        clicked[a.pair.pair_id] = point
    assert {j.pair_id: j.seven_point() for j in store.judgements("p")} == clicked
    with pytest.raises(ValueError, match="no shown order"):
        Judgement("x", "ann", "r1", Strength.BETTER).seven_point()


def test_lease_expires_and_the_pair_returns(store, clock, make_pairs):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(1))
    for u in ("alice", "bob"):
        store.add_user(u)
    held = store.claim("p", "alice", lease_seconds=60)
    assert store.claim("p", "bob", lease_seconds=60) is None  # the only slot is leased
    clock.advance(30)
    assert store.claim("p", "alice", lease_seconds=60).id == held.id  # renewed at 30 s → 90 s
    clock.advance(59)
    assert store.claim("p", "bob", lease_seconds=60) is None
    clock.advance(2)  # alice walked away
    got = store.claim("p", "bob", lease_seconds=60)
    assert got is not None and got.pair.pair_id == held.pair.pair_id
    assert store.claim("p", "alice") is None  # bob holds it now
    # alice's late answer would put the pair over its overlap: refused, saying why; bob's counts
    with pytest.raises(LeaseLost, match="ran out and it went to other annotators"):
        store.submit(held.id, "alice", Judgement.from_seven_point(held.pair.pair_id, "alice", 2, held.shown_order))
    store.submit(got.id, "bob", Judgement.from_seven_point(got.pair.pair_id, "bob", 2, got.shown_order))
    assert [j.annotator for j in store.judgements("p")] == ["bob"]
    with store.engine.connect() as c:
        assert c.execute(select(PairRow.done, PairRow.held, PairRow.complete)).one() == (1, 0, True)


def test_expired_claim_can_be_claimed_again_by_the_same_user(store, clock, make_pairs):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(1))
    store.add_user("ann")
    a = store.claim("p", "ann", lease_seconds=10)
    clock.advance(11)
    again = store.claim("p", "ann", lease_seconds=10)
    assert again.id == a.id and again.expires_at > a.expires_at


def test_submit_is_idempotent(store, make_pairs):
    store.create_project("p", overlap=2)
    store.import_pairs("p", make_pairs(2))
    store.add_user("ann")
    a = store.claim("p", "ann")
    j = Judgement.from_seven_point(a.pair.pair_id, "ann", -3, a.shown_order, rationale="rõ ràng hơn", seconds=4.5)
    first = store.submit(a.id, "ann", j)
    other = Judgement.from_seven_point(a.pair.pair_id, "ann", 3, a.shown_order)
    assert store.submit(a.id, "ann", j) == first
    assert store.submit(a.id, "ann", other) == first  # first wins; changing is change_judgement
    assert len(store.judgements("p")) == 1
    assert first.rationale == "rõ ràng hơn" and first.seconds == 4.5 and first.strength is Strength.SIGNIFICANTLY_BETTER
    with store.engine.connect() as c:
        assert c.execute(select(PairRow.done).where(PairRow.pair_id == a.pair.pair_id)).scalar_one() == 1


def test_submit_rejects_bad_judgements(store, make_pairs):
    store.create_project("p", overlap=2)
    store.import_pairs("p", make_pairs(2))
    for u in ("ann", "eve"):
        store.add_user(u)
    a = store.claim("p", "ann")
    with pytest.raises(DataError, match="not held by 'eve'"):
        store.submit(a.id, "eve", Judgement.from_seven_point(a.pair.pair_id, "eve", 1, a.shown_order))
    with pytest.raises(DataError, match="not a response of pair"):
        store.submit(a.id, "ann", Judgement(a.pair.pair_id, "ann", "r-unknown", Strength.BETTER))
    with pytest.raises(DataError, match="judgement is for pair"):
        store.submit(a.id, "ann", Judgement("pair-other", "ann", None, Strength.NEGLIGIBLY_BETTER))
    with pytest.raises(DataError, match="unsafe flags"):
        store.submit(a.id, "ann", Judgement(a.pair.pair_id, "ann", None, "unsure", unsafe=("r-x",)))
    assert store.judgements("p") == []


def test_skip_and_report(store, make_pairs):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(2))
    for u in ("ann", "bob"):
        store.add_user(u)
    a = store.claim("p", "ann")
    store.skip(a.id, "ann")
    store.skip(a.id, "ann")  # a repeated click changes nothing
    b = store.claim("p", "ann")
    assert b.pair.pair_id != a.pair.pair_id
    with pytest.raises(DataError, match="needs a reason"):
        store.report(b.id, "ann", "  ")
    store.report(b.id, "ann", "both unusable")
    assert store.claim("p", "ann") is None
    with pytest.raises(DataError, match="was skipped"):
        store.submit(a.id, "ann", Judgement.from_seven_point(a.pair.pair_id, "ann", 1, a.shown_order))
    got = {store.claim("p", "bob").pair.pair_id}  # skipped and reported pairs stay in bob's queue
    assert got <= {a.pair.pair_id, b.pair.pair_id}
    reports = store.dashboard("p").reports
    assert list(reports["reason"]) == ["both unusable"] and list(reports["annotator"]) == ["ann"]


def test_my_work_change_and_withdraw(store, clock, make_pairs):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(3))
    for u in ("ann", "bob"):
        store.add_user(u)
    first = _judge(store, "p", "ann", -2)
    clock.advance(5)
    second = _judge(store, "p", "ann", 1)
    mine = store.my_judgements("ann", "p")
    assert [j.pair_id for _, j in mine] == [second.pair_id, first.pair_id]
    assert all(p.pair_id == j.pair_id for p, j in mine)
    assert store.my_judgements("bob") == []

    pair = mine[1][0]
    changed = store.change_judgement(
        "ann", first.pair_id, Judgement(first.pair_id, "ann", None, "unsure", rationale="không chắc")
    )
    assert changed.preferred is None and changed.rationale == "không chắc"
    assert changed.shown_order == first.shown_order
    assert {j.pair_id: j for j in store.judgements("p")}[first.pair_id] == changed  # returned as stored
    with pytest.raises(DataError, match="no judgement on pair"):
        store.change_judgement("bob", first.pair_id, changed)

    store.withdraw("ann", pair.pair_id)
    assert [j.pair_id for j in store.judgements("p")] == [second.pair_id]
    third = ({p.pair_id for p in store.pairs("p")} - {first.pair_id, second.pair_id}).pop()

    def offered(user: str) -> set[str]:
        got = set()
        while (a := store.claim("p", user)) is not None:
            got.add(a.pair.pair_id)
            store.skip(a.id, user)
        return got

    # the withdrawn pair returns to the queue for others, not for ann
    assert offered("bob") == {first.pair_id, third}
    assert offered("ann") == {third}


def test_progress(store, clock, make_pairs):
    store.create_project("p", overlap=2)
    store.import_pairs("p", make_pairs(5))
    for u in ("ann", "bob", "cat"):
        store.add_user(u)
    assert store.progress("p", "ann") == Progress(done_today=0, left_in_queue=5, done_total=0)
    _judge(store, "p", "ann")
    clock.advance(24 * 3600)  # the next day
    _judge(store, "p", "ann")
    prog = store.progress("p", "ann")
    assert (prog.done_today, prog.left_in_queue, prog.done_total) == (1, 3, 2)
    # everyone walks the same queue order: bob completes ann's two pairs and starts a third,
    # cat completes that one, so it leaves ann's queue too
    for u in ("bob", "bob", "bob", "cat"):
        _judge(store, "p", u)
    assert store.progress("p", "bob").done_total == 3
    assert store.progress("p", "ann").left_in_queue == 2


def _left_by_hand(store: Store, project: str, user: str) -> int:
    """Open pairs (not complete, done + held < required) this user holds no claim on and has not
    judged, skipped or reported, counted row by row from the tables."""
    from prefkit.annotate.tables import AssignmentRow, ProjectRow

    with store.engine.connect() as conn:
        pid = conn.execute(select(ProjectRow.id).where(ProjectRow.name == project)).scalar_one()
        uid = conn.execute(select(UserRow.id).where(UserRow.name == user)).scalar_one()
        pairs = conn.execute(
            select(PairRow.id, PairRow.complete, PairRow.done, PairRow.held, PairRow.required).where(
                PairRow.project_id == pid
            )
        ).all()
        mine = set(
            conn.execute(
                select(AssignmentRow.pair_row_id).where(
                    AssignmentRow.user_id == uid, AssignmentRow.project_id == pid, AssignmentRow.status != "expired"
                )
            ).scalars()
        )
    return sum(1 for p in pairs if not p.complete and p.done + p.held < p.required and p.id not in mine)


def test_progress_left_matches_the_rows_in_every_state(store, clock, make_pairs):
    """The left count is found without walking the open pairs (all pairs, less the complete
    ones, less the busy ones found from the active leases): it must equal the row-by-row count
    whatever the queue's state — pairs held to their limit by others, complete, expired leases,
    skips, reports, undos — with the pair count given by the caller or counted."""
    import random

    store.create_project("p", overlap=2, calibration=0.3, calibration_overlap=3, seed=3)
    store.import_pairs("p", make_pairs(12))
    users = ["ann", "bob", "cat", "dan"]
    for u in users:
        store.add_user(u)
    rng = random.Random(5)
    held: dict[str, object] = {}
    seen_busy = seen_complete = False
    for step in range(120):
        u = rng.choice(users)
        action = rng.random()
        if action < 0.45:
            a = held.pop(u, None) or store.claim("p", u, lease_seconds=60)
            if a is not None:
                store.submit(a.id, u, Judgement.from_seven_point(a.pair.pair_id, u, -2, a.shown_order))
        elif action < 0.75:
            held[u] = store.claim("p", u, lease_seconds=60) or held.get(u)
        elif action < 0.85 and held.get(u) is not None:
            a = held.pop(u)
            store.skip(a.id, u) if rng.random() < 0.5 else store.report(a.id, u, "Bad prompt")
        elif action < 0.93:
            with contextlib.suppress(DataError):  # a skip others have taken up since stays
                store.undo_last("p", u, lease_seconds=600)
            held.pop(u, None)
        else:
            clock.advance(61)  # every lease runs out (reaped by the next claim)
            held.clear()
        with store.engine.connect() as conn:
            rows = conn.execute(select(PairRow.complete, PairRow.done, PairRow.held, PairRow.required)).all()
        seen_busy |= any(not r.complete and r.done + r.held >= r.required for r in rows)
        seen_complete |= any(r.complete for r in rows)
        for v in users:
            want = _left_by_hand(store, "p", v)
            assert store.progress("p", v).left_in_queue == want, (step, v)
            assert store.progress("p", v, pairs=12).left_in_queue == want, (step, v)
    assert seen_busy and seen_complete  # the walk went through the states the count must handle


def test_dashboard_figures(store, clock, make_pairs):
    store.create_project("p", overlap=2)
    store.import_pairs("p", make_pairs(4))
    for u in ("ann", "bob"):
        store.add_user(u, admin=u == "ann")
    for i in range(4):
        _judge(store, "p", "ann", -2, seconds=10.0 + i)  # ann always picks the left response
        clock.advance(1800)
        _judge(store, "p", "bob", 1, seconds=4.0)  # bob always picks the right one, slightly
    d = store.dashboard("p")
    assert d.summary == {
        "pairs": 4,
        "complete": 4,
        "judgements": 8,
        "needed": 8,
        "annotators": 2,
        "skipped": 0,
        "reported": 0,
    }
    per = d.per_annotator.set_index("annotator")
    assert per.loc["ann", "judgements"] == 4 and per.loc["ann", "median_seconds"] == 11.5
    assert d.labels_per_hour["judgements"].sum() == 8 and d.labels_per_hour["hour"].nunique() >= 2
    assert len(d.time_per_item) == 8
    assert dict(zip(d.strength["strength"], d.strength["judgements"], strict=True)) == {
        "significantly better": 0,
        "better": 4,
        "slightly better": 4,
        "negligibly better": 0,
        "unsure": 0,
    }
    bias = d.position_bias.set_index("annotator")
    assert bias.loc["ann", "left_share"] == 1.0 and bias.loc["bob", "left_share"] == 0.0
    assert bias.loc["(all)", "left_share"] == 0.5
    assert d.agreement.items == 4 and d.agreement.comparisons == 4


def test_export_writes_a_dataset(store, make_pairs, tmp_path):
    from datasets import load_from_disk

    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(20))
    store.add_user("ann")
    with pytest.raises(DataError, match="no judgements"):
        store.export("p", tmp_path / "empty")
    for _ in range(20):
        _judge(store, "p", "ann", -3)
    store.export("p", tmp_path / "ds", test_size=0.2, margin="large")
    ds = load_from_disk(str(tmp_path / "ds"))
    rows = [r for split in ds.values() for r in split]
    assert len(rows) == 20 and set(ds) == {"train", "test"}
    assert all(r["margin"] == 3.0 and r["strength"] == "significantly_better" for r in rows)
    pairs = {p.prompt.question: p for p in store.pairs("p")}
    by_q = {j.pair_id: j for j in store.judgements("p")}
    for r in rows:
        pair = pairs[r["question"]]
        assert r["chosen"] == pair.response(by_q[pair.pair_id].preferred).text


def test_export_card_counts_the_unjudged_pairs(store, make_pairs, tmp_path):
    store.create_project("p", overlap=1)
    store.import_pairs("p", make_pairs(20))
    store.add_user("ann")
    for _ in range(12):
        _judge(store, "p", "ann", 2)
    report = store.export("p", tmp_path / "ds", test_size=0.25)
    assert (report.pairs, report.judgements, report.exported, report.unjudged_pairs) == (20, 12, 12, 8)
    card = (tmp_path / "ds" / "README.md").read_text(encoding="utf-8")
    assert "`12 judgements`" in card
    assert "20 pairs, 12 judgements, 12 exported" in card and "8 pairs not yet judged" in card


def test_ensure_project_creates_once_and_keeps_queue_settings(store):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:  # racing first imports create one project
        made = list(pool.map(lambda _: store.ensure_project("p", overlap=1, calibration=0.5, seed=3), range(8)))
    assert len({p.id for p in made}) == 1 and [p.name for p in store.list_projects()] == ["p"]
    assert (made[0].overlap, made[0].calibration, made[0].calibration_overlap, made[0].seed) == (1, 0.5, 1, 3)
    assert store.ensure_project("p", overlap=1, guidelines="## Rules").guidelines == "## Rules"
    assert store.ensure_project("p").guidelines == "## Rules"  # None leaves them as they are
    with pytest.raises(ConfigError, match="already exists with overlap=1, calibration_overlap=1; queue settings"):
        store.ensure_project("p", overlap=2, calibration_overlap=4, guidelines="## Other")
    assert store.get_project("p").guidelines == "## Rules"  # the refused call changed nothing
    with pytest.raises(ConfigError, match="overlap must be at least 1"):
        store.ensure_project("q", overlap=0)
    assert store.ensure_project("q").overlap == 2


def test_project_summaries_match_each_dashboard(store, make_pairs):
    store.create_project("a", overlap=2)
    store.create_project("b", overlap=1, calibration=0.5)
    store.create_project("empty")
    store.import_pairs("a", make_pairs(6))
    store.import_pairs("b", make_pairs(5, start=10))
    for user in ("ann", "bob"):
        store.add_user(user)
    for _ in range(4):
        _judge(store, "a", "ann", 1)
    _judge(store, "a", "bob", -1)
    store.skip(store.claim("a", "bob").id, "bob")
    store.report(store.claim("b", "ann").id, "ann", "both unusable")
    _judge(store, "b", "bob", 3)
    summaries = store.project_summaries()
    assert list(summaries) == ["a", "b", "empty"]
    for name, summary in summaries.items():
        assert summary == store.dashboard(name).summary
    assert summaries["a"] == {
        "pairs": 6,
        "complete": 1,
        "judgements": 5,
        "needed": 12,
        "annotators": 2,
        "skipped": 1,
        "reported": 0,
    }
