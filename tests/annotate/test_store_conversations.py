"""The annotation store keeps a pair's conversation (its `history` rides in the JSON row), and
rows stored before conversations existed still read, with their ids."""

from __future__ import annotations

from prefkit.annotate.store import Store
from prefkit.data.schema import Pair, Prompt, Response


def test_store_round_trips_the_turns_and_reads_old_rows(sqlite_url):
    store = Store.open(sqlite_url)
    store.create_project("conv", overlap=1)
    multi = Pair(
        Prompt(
            "Còn trà?",
            system="Ngắn gọn.",
            history=(("user", "Kể về phở."), ("assistant", "Phở ngon.")),
            adversarial=True,
        ),
        Response("Trà thơm.", model="m"),
        Response("Không.", model="m"),
    )
    one = Pair(Prompt("Một lượt?"), Response("Có."), Response("Không."))
    store.import_pairs("conv", [multi, one])
    back = {p.pair_id: p for p in store.pairs("conv")}
    assert back[multi.pair_id] == multi and back[one.pair_id] == one
    assert back[multi.pair_id].prompt.turns == (
        ("user", "Kể về phở."),
        ("assistant", "Phở ngon."),
        ("user", "Còn trà?"),
    )
    assert back[multi.pair_id].prompt.adversarial
    # a row stored before conversations existed (no history/adversarial keys) reads as one turn, same ids
    old = {k: v for k, v in one.to_row().items() if k not in ("history", "adversarial")}
    assert Pair.from_row(old) == one and Pair.from_row(old).pair_id == one.pair_id
