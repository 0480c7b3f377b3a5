"""Hand-worked checks of musicmap.metrics. Ranks are 1-based in the comments; D(i) = 1/log2(i+1)
is the NDCG discount of rank i: D(1) = 1, D(2) = 0.6309298, D(3) = 0.5, D(4) = 0.4306766."""
from __future__ import annotations

import math
import random

import numpy as np
import pytest

from musicmap import metrics as M


def D(i: int) -> float:
    return 1.0 / math.log2(i + 1)


def fillers(n: int, prefix: str = "f") -> list[str]:
    """n distinct items that are never held out."""
    return [f"{prefix}{i}" for i in range(n)]


# --------------------------------------------------------------------------- R-precision

def test_r_precision_counts_hits_in_top_g():
    # G = {a,b,c}, |G| = 3; R = [x,a,y,b,c]: R[1:3] = [x,a,y] holds a -> 1/3 (b, c come too late)
    assert M.r_precision(["x", "a", "y", "b", "c"], ["a", "b", "c"]) == pytest.approx(1 / 3)
    # perfect and empty-handed
    assert M.r_precision(["c", "b", "a"], ["a", "b", "c"]) == pytest.approx(1.0)
    assert M.r_precision(["x", "y", "z"], ["a", "b", "c"]) == pytest.approx(0.0)


def test_r_precision_dedups_ranked_before_cutting_top_g():
    # R = [x,x,a,b] -> [x,a,b]; G = {a,b}: R[1:2] = [x,a] -> 1/2 (without dedup [x,x] -> 0)
    assert M.r_precision(["x", "x", "a", "b"], ["a", "b"]) == pytest.approx(0.5)
    # a repeated hit counts once: R = [a,a,a] -> [a]; G = {a,b}: 1/2 (not 2/2)
    assert M.r_precision(["a", "a", "a"], ["a", "b"]) == pytest.approx(0.5)


def test_r_precision_dedups_holdouts():
    # holdouts [a,a,b] -> G = {a,b}, |G| = 2; R = [a,b] -> 2/2 (not 2/3)
    assert M.r_precision(["a", "b"], ["a", "a", "b"]) == pytest.approx(1.0)


# --------------------------------------------------------------------------- NDCG

def test_ndcg_hand_worked():
    # G = {a,b,c}; R = [x,a,y,b]: hits at ranks 2 and 4.
    # DCG = D(2) + D(4) = 0.6309298 + 0.4306766 = 1.0616064
    # IDCG = D(1) + D(2) + D(3) = 1 + 0.6309298 + 0.5 = 2.1309298 -> NDCG = 0.4981893
    got = M.ndcg(["x", "a", "y", "b"], ["a", "b", "c"])
    assert got == pytest.approx((D(2) + D(4)) / (D(1) + D(2) + D(3)))
    assert got == pytest.approx(0.4981893, abs=1e-7)


def test_ndcg_perfect_and_none():
    assert M.ndcg(["b", "a", "x"], ["a", "b"]) == pytest.approx(1.0)
    assert M.ndcg(["x", "y"], ["a", "b"]) == pytest.approx(0.0)


def test_mean_ndcg_leaves_out_cases_without_holdouts():
    # (1 + 0) / 2 over the two cases with holdouts; the empty one is not a zero
    ranked, holdouts = [[1, 2], [5, 6], [3]], [[1], [9], []]
    assert M.mean_ndcg(ranked, holdouts) == pytest.approx(0.5)
    assert M.mean_ndcg([[3]], [[]]) == 0.0


def test_ndcg_short_list_is_not_rewarded():
    # Only one candidate: R = [a]; G = {a,b}. DCG = D(1) = 1.
    # IDCG runs over min(|G|, K) = min(2, 500) = 2 ranks, not min(|G|, |R|) = 1:
    # IDCG = 1 + 0.6309298 = 1.6309298 -> NDCG = 0.6131472 (would be 1.0 with |R|)
    assert M.ndcg(["a"], ["a", "b"]) == pytest.approx(1 / (D(1) + D(2)))
    assert M.ndcg(["a"], ["a", "b"]) == pytest.approx(0.6131472, abs=1e-7)
    # 3 candidates for |G| = 4 holdouts, all hits: DCG = D1+D2+D3, IDCG = D1+D2+D3+D4
    assert M.ndcg(["a", "b", "c"], ["a", "b", "c", "d"]) == pytest.approx(
        (D(1) + D(2) + D(3)) / (D(1) + D(2) + D(3) + D(4)))


def test_ndcg_k_caps_both_list_and_ideal():
    # k = 1 asked for: R = [a] (b is cut), IDCG over min(|G|, k) = 1 rank -> 1.0
    assert M.ndcg(["a", "b"], ["a", "b"], k=1) == pytest.approx(1.0)
    # a hit beyond K = 500 does not count: 500 fillers then a -> 0
    assert M.ndcg(fillers(500) + ["a"], ["a"]) == pytest.approx(0.0)
    # the hit at rank 500 does: DCG = D(500), IDCG = D(1) = 1
    assert M.ndcg(fillers(499) + ["a"], ["a"]) == pytest.approx(D(500))


def test_ndcg_dedups_ranked():
    # R = [x,a,a,b] -> [x,a,b]; G = {a,b}: DCG = D(2) + D(3); IDCG = D(1) + D(2)
    assert M.ndcg(["x", "a", "a", "b"], ["a", "b"]) == pytest.approx(
        (D(2) + D(3)) / (D(1) + D(2)))


# --------------------------------------------------------------------------- clicks

@pytest.mark.parametrize("rank, expected", [(1, 0), (2, 0), (10, 0), (11, 1), (20, 1), (21, 2),
                                            (500, 49)])
def test_clicks_by_rank_of_first_hit(rank, expected):
    # floor((rank - 1) / 10)
    ranked = fillers(rank - 1) + ["a"] + fillers(5, "g")
    assert M.clicks(ranked, ["a", "b"]) == expected


def test_clicks_no_hit_is_51():
    assert M.clicks(fillers(500), ["a"]) == 51
    assert M.clicks([], ["a"]) == 51
    # a hit at rank 501 is beyond K = 500: no hit
    assert M.clicks(fillers(500) + ["a"], ["a"]) == 51


def test_clicks_uses_first_hit_and_dedup():
    # hits at ranks 12 and 3 -> first hit is rank 3 -> 0
    ranked = ["x", "y", "b"] + fillers(8) + ["a"]
    assert M.clicks(ranked, ["a", "b"]) == 0
    # R = [f0..f8, f0, a] -> [f0..f8, a]: a moves from rank 11 to rank 10 -> 0 clicks, not 1
    assert M.clicks(fillers(9) + ["f0", "a"], ["a"]) == 0


# --------------------------------------------------------------------------- @k metrics

def test_precision_hit_rate_recall_at_k():
    ranked = ["x", "a", "y", "b", "c"]
    g = ["a", "b", "c", "d"]                      # |G| = 4
    # R[1:2] = [x,a]: 1 hit
    assert M.precision_at(ranked, g, 2) == pytest.approx(1 / 2)
    assert M.hit_rate_at(ranked, g, 2) == 1.0
    assert M.recall_at(ranked, g, 2) == pytest.approx(1 / 4)
    # R[1:1] = [x]: no hit
    assert M.precision_at(ranked, g, 1) == 0.0
    assert M.hit_rate_at(ranked, g, 1) == 0.0
    assert M.recall_at(ranked, g, 1) == 0.0
    # R[1:20] = all 5 items, 3 hits: precision divides by 20 even though |R| = 5
    assert M.precision_at(ranked, g, 20) == pytest.approx(3 / 20)
    assert M.recall_at(ranked, g, 20) == pytest.approx(3 / 4)


def test_at_k_dedups_ranked():
    # R = [a,a,b] -> [a,b]; G = {a,b}: precision@2 = 2/2 (not 1/2)
    assert M.precision_at(["a", "a", "b"], ["a", "b"], 2) == pytest.approx(1.0)
    assert M.recall_at(["a", "a", "b"], ["a", "b"], 2) == pytest.approx(1.0)


# --------------------------------------------------------------------------- out of vocabulary

def test_out_of_vocabulary_holdouts_count_in_g_but_never_hit():
    # G = {a, b, oov}, |G| = 3; the model cannot rank oov. R = [a, b, x].
    ranked, g = ["a", "b", "x"], ["a", "b", "spotify:track:oov"]
    assert M.r_precision(ranked, g) == pytest.approx(2 / 3)
    assert M.recall_at(ranked, g, 20) == pytest.approx(2 / 3)
    # DCG = D1 + D2 = 1.6309298; IDCG = D1 + D2 + D3 = 2.1309298 -> 0.7653606
    assert M.ndcg(ranked, g) == pytest.approx((D(1) + D(2)) / (D(1) + D(2) + D(3)))
    assert M.ndcg(ranked, g) == pytest.approx(0.7653606, abs=1e-7)
    # all holdouts out of vocabulary: defined, zero, 51 clicks
    row = M.case_metrics(ranked, ["oov1", "oov2"])
    assert row["r_precision"] == 0.0 and row["ndcg"] == 0.0 and row["clicks"] == 51


# --------------------------------------------------------------------------- padding, integer ids

def test_minus_one_padding_is_ignored():
    # int ids; R = [5, 7] after removing padding; G = {7, 9}
    # r_precision: R[1:2] = [5,7] -> 1/2; NDCG = D(2) / (D1 + D2) = 0.3868528; clicks 0
    for ranked in (np.array([5, 7, -1, -1]), [5, 7, -1, -1], np.array([-1, 5, -1, 7]),
                   np.array([[5, 7], [-1, -1]])):
        assert M.r_precision(ranked, [7, 9]) == pytest.approx(0.5)
        assert M.ndcg(ranked, [7, 9]) == pytest.approx(D(2) / (D(1) + D(2)))
        assert M.clicks(ranked, [7, 9]) == 0
        # -1 is not a rank: precision@2 = 1/2 (7 is at rank 2 of R), hit_rate@1 = 0 (5 at rank 1)
        assert M.precision_at(ranked, [7, 9], 2) == pytest.approx(0.5)
        assert M.hit_rate_at(ranked, [7, 9], 1) == 0.0
    # all padding: no hit
    assert M.clicks(np.full(500, -1), [7]) == 51


def test_numpy_int_ranking_dedups_keeping_first_occurrence():
    # R = [3,3,8,3,2] -> [3,8,2]; G = {2,8}: R[1:2] = [3,8] -> 1/2; hits at ranks 2, 3
    ranked = np.array([3, 3, 8, 3, 2], dtype=np.int64)
    assert M.r_precision(ranked, np.array([2, 8])) == pytest.approx(0.5)
    assert M.ndcg(ranked, [2, 8]) == pytest.approx((D(2) + D(3)) / (D(1) + D(2)))
    assert M.clicks(ranked, [2, 8]) == 0


def test_numpy_int_ranking_truncates_after_dedup():
    # 0..499 non-hits with a repeat of 0 in front, then the hit 1000 at position 502:
    # dedup leaves 0..499 then 1000 at rank 501 -> cut by K = 500
    ranked = np.concatenate(([0], np.arange(500), [1000]))
    assert M.clicks(ranked, [1000]) == 51
    assert M.clicks(ranked[1:-1].tolist()[:499] + [1000], [1000]) == 49


def test_numpy_string_ranking():
    ranked = np.array(["x", "a", "y", "b"])
    assert M.ndcg(ranked, np.array(["a", "b", "c"])) == pytest.approx(
        (D(2) + D(4)) / (D(1) + D(2) + D(3)))


# --------------------------------------------------------------------------- artist R-precision

# G: t1 by A, t2 by B, t3 by C, t4 by D  (|G| = 4, artists of G = {A, B, C, D})
ARTIST_G = ["t1", "t2", "t3", "t4"]
ARTIST_G_ARTISTS = ["A", "B", "C", "D"]
# R: t1 (A, track hit) | u1 (B) | u2 (B) | u3 (E) || u4 (C) t2 (B) ...     top |G| = 4 = before ||
ARTIST_R = ["t1", "u1", "u2", "u3", "u4", "t2"]
ARTIST_OF = {"t1": "A", "t2": "B", "t3": "C", "t4": "D",
             "u1": "B", "u2": "B", "u3": "E", "u4": "C"}


def test_r_precision_artist_hand_worked():
    # H = 1 (t1). t1's artist A earns nothing more: it is a track hit (no double count).
    # non-hits of the top 4: u1 (B), u2 (B), u3 (E): distinct artists of G among them = {B}
    # (B counted once for two tracks; E is not an artist of G) -> A = 1.
    # u4 (C) and t2 are beyond rank |G| = 4 and earn nothing.
    # (1 + 0.25 * 1) / 4 = 0.3125   [double-counting t1 would give 0.375; B twice 0.375]
    got = M.r_precision_artist(ARTIST_R, ARTIST_G, ARTIST_OF, ARTIST_G_ARTISTS)
    assert got == pytest.approx(0.3125)
    # track-level R-precision of the same case: 1/4
    assert M.r_precision(ARTIST_R, ARTIST_G) == pytest.approx(0.25)


def test_r_precision_artist_aligned_sequence_with_padding_and_duplicates():
    # same case with int ids, padding and a repeated t1; artists aligned with `ranked`
    t1, t2, t3, t4, u1, u2, u3, u4 = 1, 2, 3, 4, 11, 12, 13, 14
    ranked = np.array([t1, t1, -1, u1, u2, u3, u4, t2])
    artists = np.array([100, 100, -7, 200, 200, 500, 300, 200])   # A=100 B=200 C=300 E=500
    got = M.r_precision_artist(ranked, [t1, t2, t3, t4], artists, [100, 200, 300, 400])
    assert got == pytest.approx(0.3125)


def test_r_precision_artist_non_hit_by_artist_of_a_hit_track_earns_credit():
    # G = {t1 (A), t2 (B)}; R = [t1 (A), v (A)]: H = 1; v is a non-hit whose artist A is an artist
    # of G (the artist of the hit t1) -> A = 1: (1 + 0.25) / 2 = 0.625
    got = M.r_precision_artist(["t1", "v"], ["t1", "t2"], {"t1": "A", "v": "A"}, {"A", "B"})
    assert got == pytest.approx(0.625)
    # an unknown artist (missing from the mapping) never matches: (0 + 0) / 2
    assert M.r_precision_artist(["w", "v"], ["t1", "t2"], {}, {"A", "B"}) == 0.0


def test_r_precision_artist_in_case_metrics_only_with_both_artist_inputs():
    row = M.case_metrics(ARTIST_R, ARTIST_G, ranked_artists=ARTIST_OF,
                         holdout_artists=ARTIST_G_ARTISTS)
    assert row["r_precision_artist"] == pytest.approx(0.3125)
    assert "r_precision_artist" not in M.case_metrics(ARTIST_R, ARTIST_G)
    assert "r_precision_artist" not in M.case_metrics(ARTIST_R, ARTIST_G, ranked_artists=ARTIST_OF)


# --------------------------------------------------------------------------- empty holdouts

@pytest.mark.parametrize("empty", [[], (), np.array([], dtype=np.int64)])
def test_empty_holdouts_are_undefined(empty):
    ranked = ["a", "b"]
    assert M.r_precision(ranked, empty) is None
    assert M.r_precision_artist(ranked, empty, {}, []) is None
    assert M.ndcg(ranked, empty) is None
    assert M.clicks(ranked, empty) is None
    assert M.precision_at(ranked, empty, 20) is None
    assert M.hit_rate_at(ranked, empty, 20) is None
    assert M.recall_at(ranked, empty, 20) is None
    assert M.case_metrics(ranked, empty) is None


# --------------------------------------------------------------------------- case_metrics

def test_case_metrics_row():
    # G = {a,b,c}; R = [x,a,y,b] (x, y not held out), k_small = 2
    row = M.case_metrics(["x", "a", "y", "b"], ["a", "b", "c"], k_small=2)
    assert list(row) == M.metric_names(2) == [
        "r_precision", "ndcg", "clicks", "precision@2", "hit_rate@2", "recall@2"]
    assert row == pytest.approx({
        "r_precision": 1 / 3,                                   # [x,a,y] holds a
        "ndcg": (D(2) + D(4)) / (D(1) + D(2) + D(3)),
        "clicks": 0,                                            # first hit at rank 2
        "precision@2": 1 / 2, "hit_rate@2": 1.0, "recall@2": 1 / 3,
    })
    assert isinstance(row["clicks"], int)
    assert all(isinstance(v, float) for n, v in row.items() if n != "clicks")


def test_case_metrics_default_names_and_k():
    row = M.case_metrics(fillers(30) + ["a"], ["a"])
    assert set(row) == {"r_precision", "ndcg", "clicks", "precision@20", "hit_rate@20",
                        "recall@20"}
    # a at rank 31: clicks 3; nothing in the top 20
    assert row["clicks"] == 3 and row["hit_rate@20"] == 0.0 and row["precision@20"] == 0.0
    # k = 30 asked for: a is cut
    assert M.case_metrics(fillers(30) + ["a"], ["a"], k=30)["clicks"] == 51


def test_evaluate_cases():
    cases = [
        {"ranked": ["a", "x"], "holdouts": ["a"]},
        {"ranked": ["a", "x"], "holdouts": []},
        {"ranked": ARTIST_R, "holdouts": ARTIST_G, "ranked_artists": ARTIST_OF,
         "holdout_artists": ARTIST_G_ARTISTS},
    ]
    rows = M.evaluate_cases(cases, k_small=1)
    assert rows[0] == M.case_metrics(["a", "x"], ["a"], k_small=1)
    assert rows[1] is None
    assert rows[2]["r_precision_artist"] == pytest.approx(0.3125)
    assert "precision@1" in rows[0]


# --------------------------------------------------------------------------- aggregate

def test_aggregate_overall_and_per_group():
    rows = [
        {"r_precision": 1.0, "ndcg": 1.0, "clicks": 0},
        None,                                                   # empty G
        {"r_precision": 0.5, "ndcg": 0.25, "clicks": 51},
        {"r_precision": 0.0, "ndcg": 0.5, "clicks": 2, "r_precision_artist": 0.25},
        None,
    ]
    groups = ["title_only", "title_only", "seed_5", "seed_5", "seed_5"]
    agg = M.aggregate(rows, groups)
    assert list(agg) == ["all", "title_only", "seed_5"]
    assert agg["all"] == pytest.approx({
        "cases": 3, "skipped_empty": 2,
        "r_precision": 0.5,                   # (1 + 0.5 + 0) / 3
        "ndcg": 1.75 / 3,                     # (1 + 0.25 + 0.5) / 3
        "clicks": 53 / 3,                     # (0 + 51 + 2) / 3
        "r_precision_artist": 0.25,           # only the row that carries it
    })
    assert agg["title_only"] == pytest.approx(
        {"cases": 1, "skipped_empty": 1, "r_precision": 1.0, "ndcg": 1.0, "clicks": 0.0})
    assert agg["seed_5"] == pytest.approx({
        "cases": 2, "skipped_empty": 1, "r_precision": 0.25, "ndcg": 0.375, "clicks": 26.5,
        "r_precision_artist": 0.25})


def test_aggregate_without_groups_and_all_skipped():
    assert M.aggregate([None, None]) == {"all": {"cases": 0, "skipped_empty": 2}}
    assert M.aggregate([]) == {"all": {"cases": 0, "skipped_empty": 0}}
    agg = M.aggregate([None, {"r_precision": 0.5}], groups=[7, 8])
    assert agg[7] == {"cases": 0, "skipped_empty": 1}
    assert agg[8] == {"cases": 1, "skipped_empty": 0, "r_precision": 0.5}


def test_aggregate_rejects_misaligned_or_reserved_groups():
    with pytest.raises(ValueError):
        M.aggregate([None], groups=["a", "b"])
    with pytest.raises(ValueError):
        M.aggregate([None], groups=["all"])


# --------------------------------------------------------------------------- definitions

def test_definitions_cover_every_metric():
    names = set(M.metric_names(artists=True)) - {"precision@20", "hit_rate@20", "recall@20"}
    assert names | {"precision@k", "hit_rate@k", "recall@k", "common"} == set(M.DEFINITIONS)
    assert "log2(i + 1)" in M.DEFINITIONS["ndcg"] and "min(|G|, K)" in M.DEFINITIONS["ndcg"]
    assert "0.25" in M.DEFINITIONS["r_precision_artist"]
    assert "51" in M.DEFINITIONS["clicks"]


# --------------------------------------------------------------------------- against a naive reference

def _naive(ranked, holdouts, k, k_small):
    """Straight transcription of the definitions, list by list."""
    g = set(holdouts)
    r = []
    for x in ranked:
        if x != -1 and x not in r:
            r.append(x)
    r = r[:k]
    rel = [1 if x in g else 0 for x in r]
    first = next((i for i, v in enumerate(rel) if v), None)
    return {
        "r_precision": sum(rel[:len(g)]) / len(g),
        "ndcg": sum(v / math.log2(i + 2) for i, v in enumerate(rel))
        / sum(1 / math.log2(i + 2) for i in range(min(len(g), k))),
        "clicks": 51 if first is None else first // 10,
        f"precision@{k_small}": sum(rel[:k_small]) / k_small,
        f"hit_rate@{k_small}": 1.0 if any(rel[:k_small]) else 0.0,
        f"recall@{k_small}": sum(rel[:k_small]) / len(g),
    }


def test_matches_naive_reference_on_random_cases():
    rng = random.Random(0)
    for _ in range(200):
        k = rng.choice([5, 50, 500])
        n = rng.randint(0, 600)
        ranked = [rng.randint(-1, 800) for _ in range(n)]          # repeats and padding
        holdouts = [rng.randint(0, 1000) for _ in range(rng.randint(1, 60))]
        want = _naive(ranked, holdouts, k, 20)
        for form in (ranked, np.array(ranked, dtype=np.int64)):
            assert M.case_metrics(form, holdouts, k=k) == pytest.approx(want)
