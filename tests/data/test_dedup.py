"""MinHash dedup: normalisation, hashing against datasketch, planted near-duplicates, report."""

from __future__ import annotations

import json
import random
import unicodedata

import numpy as np
import pytest
from datasketch import LeanMinHash, MinHash, MinHashLSH
from hypothesis import given, settings
from hypothesis import strategies as st

from prefkit.core.errors import ConfigError, DataError
from prefkit.data.dedup import dedup_records, near_duplicate_pairs
from prefkit.data.minhash import SCHEME, candidate_pairs, lsh_params, signatures
from prefkit.data.shingles import normalize, shingle_hash, shingle_hashes, shingles, words

ONSETS = [
    "b",
    "c",
    "d",
    "đ",
    "g",
    "h",
    "k",
    "l",
    "m",
    "n",
    "ph",
    "qu",
    "r",
    "s",
    "t",
    "th",
    "tr",
    "v",
    "x",
    "ng",
    "nh",
    "kh",
    "ch",
    "gi",
]
VOWELS = [
    "a",
    "á",
    "à",
    "ả",
    "ã",
    "ạ",
    "ă",
    "ắ",
    "ằ",
    "ẳ",
    "â",
    "ấ",
    "ầ",
    "ậ",
    "e",
    "é",
    "è",
    "ẹ",
    "ê",
    "ế",
    "ề",
    "ệ",
    "i",
    "í",
    "ì",
    "ị",
    "o",
    "ó",
    "ò",
    "ỏ",
    "ô",
    "ố",
    "ồ",
    "ộ",
    "ơ",
    "ớ",
    "ờ",
    "ợ",
    "u",
    "ú",
    "ù",
    "ụ",
    "ư",
    "ứ",
    "ừ",
    "ự",
    "y",
    "ý",
]
CODAS = ["", "n", "ng", "m", "t", "c", "nh", "i", "u"]


def syllable(rng: random.Random) -> str:
    return rng.choice(ONSETS) + rng.choice(VOWELS) + rng.choice(CODAS)


def text(rng: random.Random, n_words: int) -> str:
    """Vietnamese-looking text (precomposed, NFC) with a full stop now and then."""
    out = []
    for i in range(n_words):
        w = syllable(rng)
        out.append(w.capitalize() if i == 0 or out[-1].endswith(".") else w)
        if rng.random() < 0.08:
            out[-1] += "."
    return " ".join(out) + "."


def variant(rng: random.Random, t: str, kind: str) -> str:
    """A near-duplicate of `t` that the dedup must catch."""
    ws = t.split(" ")
    if kind == "nfd":
        return unicodedata.normalize("NFD", t)
    if kind == "case":
        return t.upper()
    if kind == "whitespace":
        return "  \n".join(ws[: len(ws) // 2]) + "\t\t" + "   ".join(ws[len(ws) // 2 :]) + "  "
    if kind == "punctuation":
        return " ".join(w + rng.choice([",", "!", ";", " -", "…", ""]) for w in ws).replace(".", "?")
    if kind == "changed_word":
        i = rng.randrange(1, len(ws) - 1)
        return " ".join(ws[:i] + [syllable(rng)] + ws[i + 1 :])
    raise ValueError(kind)


KINDS = ["nfd", "case", "whitespace", "punctuation", "changed_word"]


# --- normalisation and shingles ---------------------------------------------------------------


def test_normalize_makes_nfd_case_whitespace_and_punctuation_variants_equal() -> None:
    t = "Đưa ra ba mẹo để giữ sức khỏe."
    for v in (
        unicodedata.normalize("NFD", t),
        t.upper(),
        "  Đưa  ra\nba\tmẹo, để giữ -- sức khỏe!!! ",
        "«Đưa ra ba mẹo để giữ sức khỏe»",
    ):
        assert normalize(v) == "đưa ra ba mẹo để giữ sức khỏe"
    # Without NFC, every word with a diacritic would differ between NFD and NFC input.
    assert len(set(unicodedata.normalize("NFD", t).lower().split()) ^ set(t.lower().split())) == 12
    assert shingles(unicodedata.normalize("NFD", t), 2) == shingles(t, 2)
    assert words("H₂O ở 100°C, cm² ½ नमस्ते") == ["h₂o", "ở", "100", "c", "cm²", "½", "नमस्ते"]


def test_shingles_short_texts_and_empty() -> None:
    assert shingles("Một hai ba bốn", 2) == {"một hai", "hai ba", "ba bốn"}
    assert shingles("Xin chào!", 3) == {"xin chào"}  # fewer words than n: one shingle
    assert shingles(" ?! ", 1) == set()
    with pytest.raises(ValueError):
        shingles("a", 0)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=6), st.integers(1, 4), st.integers(0, 2))
def test_vectorised_shingle_hashes_equal_the_one_text_reference(texts: list[str], n: int, field: int) -> None:
    hashes, offsets = shingle_hashes(texts, n, field)
    for i, t in enumerate(texts):
        expected = sorted({shingle_hash(s, field) for s in shingles(t, n)})
        assert sorted(set(hashes[offsets[i] : offsets[i + 1]].tolist())) == expected


# --- MinHash against datasketch -----------------------------------------------------------------


@pytest.mark.parametrize(("num_perm", "seed"), [(128, 1), (64, 7), (200, 12345)])
def test_signatures_are_datasketchs_affine32_minhash_value_for_value(num_perm: int, seed: int) -> None:
    rng = random.Random(seed)
    texts = [text(rng, rng.randrange(1, 60)) for _ in range(20)] + ["", "!!"]
    hashes, offsets = shingle_hashes(texts, 2, field=1)
    sigs = signatures(hashes, offsets, num_perm, seed)
    for t, sig in zip(texts, sigs, strict=True):
        m = MinHash(
            num_perm=num_perm, seed=seed, scheme=SCHEME, hashfunc=lambda s: shingle_hash(s.decode(), 1) >> 32
        )  # top 32 bits, as documented
        m.update_batch([s.encode() for s in shingles(t, 2)])
        assert sig.dtype == np.uint32
        assert np.array_equal(m.hashvalues, sig)


def test_jaccard_estimates_agree_with_datasketchs_default_minhash() -> None:
    """Against datasketch's own MinHash (SHA-1 hashes): same Jaccard within sampling error."""
    rng = random.Random(3)
    base = [text(rng, 80) for _ in range(30)]
    others = []
    for i, t in enumerate(base):  # from identical to unrelated: keep a share of the words
        ws = t.split()
        keep = int(len(ws) * (i / len(base)))
        others.append(" ".join(ws[:keep] + [syllable(rng) for _ in ws[keep:]]))
    num_perm = 256
    hashes, offsets = shingle_hashes(base + others, 1)
    sigs = signatures(hashes, offsets, num_perm, 1)
    diffs = []
    for i, (a, b) in enumerate(zip(base, others, strict=True)):
        ma, mb = (MinHash(num_perm=num_perm) for _ in range(2))
        ma.update_batch([s.encode() for s in shingles(a, 1)])
        mb.update_batch([s.encode() for s in shingles(b, 1)])
        ours = np.mean(sigs[i] == sigs[len(base) + i])
        sa, sb = shingles(a, 1), shingles(b, 1)
        exact = len(sa & sb) / len(sa | sb)
        assert abs(ours - exact) < 0.12 and abs(ma.jaccard(mb) - exact) < 0.12
        diffs.append(abs(ours - ma.jaccard(mb)))
    assert np.mean(diffs) < 0.05


def test_candidate_pairs_are_exactly_minhashlshs() -> None:
    """The numpy banding finds the same candidates as datasketch's MinHashLSH on the same sketches."""
    rng = random.Random(11)
    texts = []
    for _ in range(150):
        t = text(rng, rng.randrange(20, 60))
        texts.append(t)
        for _ in range(rng.randrange(0, 3)):
            texts.append(variant(rng, t, "changed_word"))
    threshold, num_perm = 0.7, 128
    hashes, offsets = shingle_hashes(texts, 2)
    sigs = signatures(hashes, offsets, num_perm, 1)
    b, r = lsh_params(threshold, num_perm)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    assert (lsh.b, lsh.r) == (b, r)
    sketches = [LeanMinHash(seed=1, hashvalues=s, scheme=SCHEME) for s in sigs]
    for i, m in enumerate(sketches):
        lsh.insert(i, m)
    expected = {(min(i, j), max(i, j)) for i, m in enumerate(sketches) for j in lsh.query(m) if j != i}
    ours = {tuple(p) for p in candidate_pairs(sigs, b, r).tolist()}
    assert len(expected) > 50
    assert ours == expected


# --- the pipeline -------------------------------------------------------------------------------


def planted_corpus(seed: int = 5) -> tuple[list[dict], dict[int, int], dict[int, str]]:
    """Distinct texts, near-duplicates of each kind planted after their originals, and hard
    negatives (half the words shared) that must stay.
    Returns rows, {duplicate: original} and {duplicate: kind of variant}."""
    rng = random.Random(seed)
    rows: list[dict] = []
    truth: dict[int, int] = {}
    kinds: dict[int, str] = {}
    for k in range(300):
        t = text(rng, rng.randrange(60, 100))
        orig = len(rows)
        rows.append({"prompt": f"Câu hỏi số {k}: {syllable(rng)} {syllable(rng)}?", "response": t})
        if k % 3 == 0:
            kind = KINDS[(k // 3) % len(KINDS)]
            truth[len(rows)] = orig
            kinds[len(rows)] = kind
            rows.append({"prompt": rows[orig]["prompt"], "response": variant(rng, t, kind)})
        elif k % 3 == 1:
            ws = t.split()
            half = ws[: len(ws) // 2] + [syllable(rng) for _ in ws[len(ws) // 2 :]]
            rows.append({"prompt": rows[orig]["prompt"], "response": " ".join(half)})
    return rows, truth, kinds


def test_planted_near_duplicates_precision_and_recall() -> None:
    rows, truth, kinds = planted_corpus()
    kept, report = dedup_records(rows, ["response"], threshold=0.8, workers=1)
    removed = {r.row: r for r in report.removed}
    true_pos = [i for i in removed if i in truth]
    precision = len(true_pos) / len(removed)
    recall = len(true_pos) / len(truth)
    assert precision == 1.0, [(r, removed[r]) for r in removed if r not in truth]
    assert recall >= 0.95, sorted(set(truth) - set(removed))
    for i in true_pos:
        assert removed[i].duplicate_of == truth[i] and removed[i].kind == "near"
    assert kept == sorted(set(range(len(rows))) - set(removed))
    assert {kinds[i] for i in true_pos} == set(KINDS)
    # the identity-preserving variants are always caught; only a changed word may slip past LSH
    assert {kinds[i] for i in set(truth) - set(removed)} <= {"changed_word"}


def test_exact_pass_whole_rows_then_near_pass_on_the_key() -> None:
    rows = [
        {"prompt": "Thủ đô của Việt Nam là gì?", "response": "Hà Nội.", "id": 1},
        {"prompt": "Thủ đô của Việt Nam là gì?", "response": "Hà Nội.", "id": 1},  # identical row
        {"prompt": "thủ đô của việt nam là gì", "response": "Hà Nội!", "id": 2},  # same key, other id
        {"prompt": "Thủ đô của Pháp là gì?", "response": "Paris.", "id": 3},
    ]
    kept, report = dedup_records(rows, ["prompt", "response"])
    assert kept == [0, 3]
    assert (report.exact_removed, report.near_removed) == (1, 1)
    exact, near = report.removed
    assert (exact.row, exact.kind, exact.duplicate_of, exact.jaccard) == (1, "exact", 0, 1.0)
    assert (near.row, near.kind, near.duplicate_of, near.matched, near.jaccard) == (2, "near", 0, 0, 1.0)


def test_chosen_is_never_compared_with_rejected() -> None:
    rng = random.Random(8)
    x, y = text(rng, 40), text(rng, 40)
    rows = [
        {"question": "Viết về mùa thu", "chosen": x, "rejected": y},
        {"question": "Viết về mùa xuân", "chosen": y, "rejected": x},  # sides swapped
        {"question": "Viết về mùa hè", "chosen": y, "rejected": text(rng, 40)},  # its chosen = row 0's rejected
    ]
    kept, report = dedup_records(rows, ["chosen", "rejected"])
    assert kept == [0, 1, 2] and report.candidate_pairs == 0
    kept, _ = dedup_records(rows, ["chosen"])
    assert kept == [0, 1]  # row 2's chosen repeats row 1's chosen, not row 0's rejected


def test_report_contents() -> None:
    rows, _, _ = planted_corpus(seed=9)
    rows.append({"prompt": "?", "response": "…"})  # a key with no words
    kept, report = dedup_records(rows, ["prompt", "response"], threshold=0.75, num_perm=64, seed=3)
    d = json.loads(json.dumps(report.to_dict()))
    assert d["rows_in"] == len(rows) and d["rows_out"] == len(kept) == len(rows) - len(d["removed"])
    assert d["exact_removed"] + d["near_removed"] == len(d["removed"])
    assert d["empty_keys"] == 1
    assert d["key_fields"] == ["prompt", "response"] and set(d["ngram"]) == {"prompt", "response"}
    lsh = MinHashLSH(threshold=0.75, num_perm=64)
    assert (d["bands"], d["rows_per_band"]) == (lsh.b, lsh.r)
    assert d["scheme"] == "affine32" and d["verify"] == "exact" and d["seed"] == 3
    assert d["candidate_pairs"] >= d["confirmed_pairs"] > 0 and d["identical_keys"] > 0
    assert d["confirmed_pairs"] + d["identical_keys"] >= d["near_removed"] > 0
    kept_set = set(kept)
    for r in d["removed"]:
        assert r["duplicate_of"] in kept_set and r["row"] not in kept_set
        assert r["jaccard"] >= 0.75
    ex = d["examples"][0]
    assert ex["kept"] in kept_set and ex["size"] >= 2
    assert ex["members"][0]["row"] == ex["kept"] and "jaccard" in ex["members"][1]
    assert "Câu hỏi" in ex["members"][0]["key"]
    assert "removed" in report.summary()


def test_deterministic_for_a_seed_and_seed_changes_signatures() -> None:
    rows, _, _ = planted_corpus(seed=2)
    a = dedup_records(rows, ["response"], seed=4, verify="estimate")
    b = dedup_records(rows, ["response"], seed=4, verify="estimate")
    assert a[0] == b[0] and a[1].removed == b[1].removed
    h, off = shingle_hashes([r["response"] for r in rows[:10]], 3)
    assert not np.array_equal(signatures(h, off, 128, 4), signatures(h, off, 128, 5))


def test_workers_give_the_same_result_as_one_process() -> None:
    rng = random.Random(1)
    base, _, _ = planted_corpus(seed=4)
    rows = base + [{"prompt": "p", "response": text(rng, 30)} for _ in range(4_500)]  # above the pool threshold
    one = dedup_records(rows, ["prompt", "response"], workers=1)
    two = dedup_records(rows, ["prompt", "response"], workers=2)
    assert one[0] == two[0] and one[1].removed == two[1].removed


def test_estimate_verification_and_near_duplicate_pairs() -> None:
    rows, truth, _ = planted_corpus(seed=6)
    _kept, report = dedup_records(rows, ["response"], verify="estimate")
    assert report.verify == "estimate"
    assert len({r.row for r in report.removed} & set(truth)) >= 0.95 * len(truth)
    rng = random.Random(0)
    t = text(rng, 50)
    assert near_duplicate_pairs([t, t, t, ""], [t.upper(), variant(rng, t, "changed_word"), text(rng, 50), "  "]) == [
        True,
        True,
        False,
        True,
    ]


@pytest.mark.parametrize(
    ("rows", "fields", "row", "field"),
    [
        ([{"prompt": "a"}, {"response": "b"}], ["prompt"], 1, "prompt"),
        ([{"prompt": "a"}, {"prompt": 3}], ["prompt"], 1, "prompt"),
        ([{"prompt": "a", "response": None}], ["prompt", "response"], 0, "response"),
        (["not a dict"], ["prompt"], 0, "prompt"),
    ],
)
def test_bad_records_raise_located_data_errors(rows: list, fields: list[str], row: int, field: str) -> None:
    with pytest.raises(DataError) as e:
        dedup_records(rows, fields)
    assert (e.value.row, e.value.field) == (row, field)


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 0.0}, {"threshold": 1.5}, {"num_perm": 1}, {"verify": "maybe"}, {"ngram": -1}, {"workers": -2}],
)
def test_bad_settings_raise_config_errors(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        dedup_records([{"prompt": "a"}], ["prompt"], **kwargs)


def test_rows_repeating_a_key_are_linked_without_lsh() -> None:
    """Preference data: the same prompt in many pairs. Rows whose key has the same shingle set
    join the first such row directly; LSH only sees one row per distinct set."""
    rng = random.Random(12)
    prompts = [text(rng, 12) for _ in range(50)]
    rows = [
        {"question": p if k % 2 else p.upper(), "chosen": text(rng, 20), "rejected": text(rng, 20)}
        for p in prompts
        for k in range(6)
    ]
    kept, report = dedup_records(rows, ["question"])
    assert kept == list(range(0, len(rows), 6))
    assert report.identical_keys == 250 and report.candidate_pairs == 0
    assert all(r.duplicate_of == r.matched == r.row - r.row % 6 and r.jaccard == 1.0 for r in report.removed)
