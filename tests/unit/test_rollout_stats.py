"""Shadow comparison statistics against direct computations, the candidate config, sticky
sampling, the Serve config edit and the gate's figure checks (pure; no services)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydantic import ValidationError
from scipy.stats import chi2
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from serve_app.domain.records import ServedModels, TaskModel
from serve_app.flow.analysis import AnalysisFlow
from serve_app.lifecycle.agreement import compare_pairs
from serve_app.lifecycle.gate import card_figures, figure_checks
from serve_app.lifecycle.rollout import (
    CandidateConfig,
    classifier_user_config,
    in_shadow,
    keyword_in_canary,
    read_rollout,
    rewrite_serve_config,
)
from serve_app.lifecycle.shadow import ShadowPair
from serve_app.monitoring.drift import chi2_sf as numpy_chi2_sf

pytestmark = pytest.mark.unit

LABELS = ["sadness", "joy", "love", "anger", "fear", "surprise", "neutral"]
REPO = Path(__file__).resolve().parents[2]


def _pairs(n: int, seed: int = 0) -> list[ShadowPair]:
    rng = np.random.default_rng(seed)
    live = rng.choice(len(LABELS), n, p=[0.15, 0.2, 0.05, 0.15, 0.1, 0.05, 0.3])
    # The candidate agrees 80 % of the time, and otherwise drifts towards "anger".
    cand = np.where(
        rng.random(n) < 0.8, live, rng.choice(len(LABELS), n, p=[0.1, 0.1, 0.05, 0.4, 0.1, 0.05, 0.2])
    )
    return [
        ShadowPair(
            "s", f"p{i}", "emotion", "v1", "v2", LABELS[a], LABELS[b], (), (), 2.0 + i % 3, 1.0 + i % 5
        )
        for i, (a, b) in enumerate(zip(live, cand, strict=True))
    ]


def test_compare_figures_equal_a_direct_computation() -> None:
    pairs = _pairs(600)
    (comp,) = compare_pairs(pairs, {"emotion": LABELS})
    live = [p.live_label for p in pairs]
    cand = [p.candidate_label for p in pairs]
    assert comp.n == 600 and comp.labels == LABELS
    assert comp.confusion == confusion_matrix(live, cand, labels=LABELS).tolist()
    assert comp.agreement == pytest.approx(np.mean([a == b for a, b in zip(live, cand, strict=True)]))
    assert comp.kappa == pytest.approx(cohen_kappa_score(live, cand, labels=LABELS), abs=1e-12)
    for shift in comp.prevalence:
        d = np.array(
            [(b == shift.label) - (a == shift.label) for a, b in zip(live, cand, strict=True)], float
        )
        half = 1.959963984540054 * d.std(ddof=1) / np.sqrt(len(d))
        assert shift.diff == pytest.approx(d.mean())
        assert (shift.lo, shift.hi) == (pytest.approx(d.mean() - half), pytest.approx(d.mean() + half))
        assert shift.live_share == pytest.approx(live.count(shift.label) / 600)
    # Stuart-Maxwell from its definition: d = row - column marginals, S = Var(d) under H0.
    m = np.array(comp.confusion, float)
    k = len(LABELS) - 1
    dvec = (m.sum(1) - m.sum(0))[:k]
    s = np.array(
        [[m[i].sum() + m[:, i].sum() - 2 * m[i, i] if i == j else -(m[i, j] + m[j, i]) for j in range(k)]
         for i in range(k)]
    )  # fmt: skip
    stat = float(dvec @ np.linalg.solve(s, dvec))
    assert comp.mix_test.statistic == pytest.approx(stat)
    assert comp.mix_test.df == k
    assert comp.mix_test.p_value == pytest.approx(chi2.sf(stat, k))
    assert comp.mix_test.p_value < 0.01  # the planted drift towards anger is found
    assert comp.live_p50_ms == pytest.approx(np.median([p.live_ms for p in pairs]))
    assert comp.candidate_p50_ms == pytest.approx(np.median([p.candidate_ms for p in pairs]))


def test_identical_versions_agree_fully() -> None:
    pairs = [
        ShadowPair("s", f"p{i}", "sentiment", "a", "b", lab, lab, (), (), 1.0, 1.0)
        for i, lab in enumerate(["negative", "neutral", "positive"] * 20)
    ]
    (comp,) = compare_pairs(pairs)
    assert (comp.agreement, comp.kappa, comp.mix_test.statistic, comp.mix_test.p_value) == (
        1.0,
        1.0,
        0.0,
        1.0,
    )
    assert all(s.diff == s.lo == s.hi == 0 for s in comp.prevalence)


@pytest.mark.parametrize(("x", "df"), [(0.5, 1), (3.84, 1), (12.0, 6), (30.0, 6), (2.0, 9)])
def test_chi2_tail_without_scipy_matches_scipy(x: float, df: int) -> None:
    assert numpy_chi2_sf(x, df) == pytest.approx(chi2.sf(x, df), rel=1e-9)


def test_candidate_config_checks_its_fields() -> None:
    assert not CandidateConfig.from_user_config(None).active
    assert not CandidateConfig.from_user_config({}).active
    cfg = CandidateConfig.from_user_config({"version": "v2"})
    assert (cfg.version, cfg.shadow_share, cfg.canary_share) == ("v2", 0.1, 0.0)
    for bad in ({"version": "v2", "shadow_share": 1.5}, {"version": "../x"}, {"version": "v2", "colour": 1}):
        with pytest.raises(ValidationError):
            CandidateConfig.from_user_config(bad)
    with pytest.raises(ValueError, match="mapping"):
        CandidateConfig.from_user_config("v2")


def test_sampling_is_sticky_and_near_its_share() -> None:
    cfg = CandidateConfig(version="v2", shadow_share=0.1, canary_share=0.3)
    ids = [f"t3_{i}" for i in range(20_000)]
    picked = [in_shadow(i, cfg) for i in ids]
    assert picked == [in_shadow(i, cfg) for i in ids]
    assert 0.09 < np.mean(picked) < 0.11
    assert not any(in_shadow(i, CandidateConfig()) for i in ids[:100])
    kws = [f"keyword {i}" for i in range(5000)]
    assert 0.28 < np.mean([keyword_in_canary(k, 0.3) for k in kws]) < 0.32
    # Sticky by the normalized keyword: case and spacing do not move it.
    assert all(keyword_in_canary(k, 0.3) == keyword_in_canary(f"  {k.upper()} ", 0.3) for k in kws[:500])


def _served(version: str) -> dict[str, TaskModel]:
    return {"emotion": TaskModel(version, tuple(LABELS), ("en",), 128, "/m")}


def test_canary_keywords_are_answered_by_the_candidate_under_its_own_cache_versions() -> None:
    models = ServedModels("emotion", _served("live-v"), _served("cand-v"), 0.5)
    routes = {kw: AnalysisFlow.route(models, kw) for kw in (f"kw{i}" for i in range(400))}
    canary = [kw for kw, (_, c) in routes.items() if c]
    assert 150 < len(canary) < 250
    for kw, (m, is_canary) in routes.items():
        assert m.versions(["emotion"]) == {"emotion": "cand-v" if is_canary else "live-v"}
        assert AnalysisFlow.route(models, kw.upper())[1] == is_canary  # same keyword, same version
    off = ServedModels("emotion", _served("live-v"))
    assert not any(AnalysisFlow.route(off, kw)[1] for kw in routes)


def test_rewrite_serve_config_keeps_comments_and_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "serve_config.yaml"
    shutil.copy(REPO / "serve_config.yaml", path)
    before = path.read_text()
    cand = CandidateConfig(version="mt-v5", shadow_share=0.2, canary_share=0.05)
    rewrite_serve_config(path, model_versions={"emotion": "mt-v5", "sentiment": "mt-v5"}, candidate=cand)
    after = path.read_text()
    comments = [line.strip() for line in before.splitlines() if line.strip().startswith("#")]
    assert comments == [line.strip() for line in after.splitlines() if line.strip().startswith("#")]
    assert len(after.splitlines()) == len(before.splitlines())
    versions, got = read_rollout(path)
    assert versions == {"emotion": "mt-v5", "sentiment": "mt-v5"} and got == cand
    old, new = yaml.safe_load(before), yaml.safe_load(after)
    assert old["applications"][0]["args"] == new["applications"][0]["args"]
    uc = classifier_user_config(new)
    assert (uc["max_batch_size"], uc["batch_wait_timeout_s"]) == (32, 0.005)
    rewrite_serve_config(path, model_versions={}, candidate=CandidateConfig())
    assert read_rollout(path) == ({}, CandidateConfig())


def _card(f1: float, tvd: float, shift_tvd: float) -> dict[str, object]:
    return {
        "metrics": {
            "reddit_emotion7_validation": {"task": "emotion", "int8": {"macro_f1": f1, "breakdown_tvd": tvd}}
        },
        "counting_shift": {
            "emotion": {
                "method": "emq",
                "sets": {
                    "reddit_emotion7_validation": {
                        "protocol": {"250": {"uniform": {"emq": {"mean_tvd": shift_tvd}}}}
                    }
                },
            }
        },
    }


def test_figure_checks_refuse_a_worse_card_and_say_by_how_much() -> None:
    live = _card(0.74, 0.03, 0.05)
    assert len(card_figures(live, ["emotion"])) == 3
    assert all(c.passed for c in figure_checks(live, _card(0.738, 0.034, 0.05), ["emotion"], 0.005))
    failed = [c for c in figure_checks(live, _card(0.70, 0.03, 0.08), ["emotion"], 0.005) if not c.passed]
    assert [c.name for c in failed] == [
        "reddit_emotion7_validation.macro_f1",
        "shift.reddit_emotion7_validation.n250.uniform.mean_tvd",
    ]
    assert "worse by 0.0400" in failed[0].detail and "worse by 0.0300" in failed[1].detail
    missing = figure_checks(live, {}, ["emotion"], 0.005)
    assert not any(c.passed for c in missing) and all(c.detail == "missing" for c in missing)
