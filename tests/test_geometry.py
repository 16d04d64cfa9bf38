"""studies.geometry: the measures against their sources, and the command on a tiny study."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from studies import geometry as geo


# --- literal re-implementations of the sources --------------------------------------------
# Wang & Isola (ICML 2020), Figure 5 / their repository's align_uniform/__init__.py:
def _wang_isola_align_loss(x, y, alpha=2):
    return (x - y).norm(p=2, dim=1).pow(alpha).mean()


def _wang_isola_uniform_loss(x, t=2):
    return torch.pdist(x, p=2).pow(2).mul(-t).exp().mean().log()


# Roy & Vetterli (EUSIPCO 2007), eq. (1)-(3): p_k = sigma_k / ||sigma||_1, erank = exp(H(p)).
def _roy_vetterli_erank(a):
    sigma = np.linalg.svd(a, compute_uv=False)
    p = sigma / np.sum(np.abs(sigma))
    h = -sum(pk * math.log(pk) for pk in p if pk > 0)
    return math.exp(h)


def test_uniformity_is_wang_and_isolas_uniform_loss():
    x = np.random.default_rng(0).normal(size=(60, 16)).astype(np.float32)
    want = _wang_isola_uniform_loss(F.normalize(torch.from_numpy(x).double(), dim=1)).item()
    assert geo.uniformity(x) == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_class_alignment_is_wang_and_isolas_align_loss_over_same_label_pairs():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 8))
    labels = [str(i % 3) for i in range(40)]
    z = F.normalize(torch.from_numpy(x), dim=1)
    pairs = [(i, j) for i in range(40) for j in range(i + 1, 40)]
    same = [(i, j) for i, j in pairs if labels[i] == labels[j]]
    other = [(i, j) for i, j in pairs if labels[i] != labels[j]]
    want_same = _wang_isola_align_loss(z[[i for i, _ in same]], z[[j for _, j in same]]).item()
    want_other = _wang_isola_align_loss(z[[i for i, _ in other]], z[[j for _, j in other]]).item()
    within, between = geo.class_pairs_sq_dist(x, labels)
    assert within == pytest.approx(want_same, rel=1e-9) and between == pytest.approx(want_other, rel=1e-9)
    g = geo.geometry(x, labels)
    assert g["class_alignment"] == pytest.approx(want_same) and g["separation"] == pytest.approx(want_other / want_same)


def test_effective_rank_is_roy_and_vetterlis_of_the_centred_embeddings():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 4)) @ rng.normal(size=(4, 32)) + 5.0  # rank 4 plus an offset
    assert geo.effective_rank(x) == pytest.approx(_roy_vetterli_erank(x - x.mean(0)), rel=1e-9)
    assert 1.0 < geo.effective_rank(x) <= 4.0 + 1e-6  # the offset is centred away
    assert geo.effective_rank(np.eye(8)) == pytest.approx(7.0, rel=1e-6)  # centred identity: 7 equal values


def test_a_collapsed_embedding_reads_as_collapsed():
    """What the measures are for: one direction for every clip is low rank and not uniform."""
    rng = np.random.default_rng(3)
    collapsed = np.outer(rng.normal(size=30), rng.normal(size=64)) + 1e-3 * rng.normal(size=(30, 64))
    spread = rng.normal(size=(30, 64))
    assert geo.effective_rank(collapsed) < 2 < 20 < geo.effective_rank(spread)
    assert geo.uniformity(collapsed) > geo.uniformity(spread)


def test_one_label_has_no_separation():
    within, between = geo.class_pairs_sq_dist(np.random.default_rng(4).normal(size=(5, 3)), ["a"] * 5)
    assert math.isnan(within) and math.isnan(between)


@pytest.mark.slow
def test_geometry_command_on_recorded_points(tmp_path):
    """The command reads points.json, embeds through the study's cache and writes its report."""
    from eval_suites.synthetic.demo_data import build_demo
    from hear_slicer.checkpoint import Checkpoint, save_checkpoint
    from hear_slicer.encoder import AudioNTT2020, EncoderConfig
    from hear_slicer.frontend import FrontendConfig

    root = tmp_path / "data"
    build_demo(root, "tiny", workers=2, progress=False)
    runs = tmp_path / "runs"
    small = EncoderConfig(channels=8, d=32)
    for path in (runs / "random_init_source.pt", runs / "slicer" / "curve" / "slicer_step00002.pt"):
        save_checkpoint(Checkpoint(frontend=FrontendConfig(), encoder=small, norm_mean=-6.5, norm_std=3.25,
                                   student=AudioNTT2020(small).state_dict(), use="student",
                                   provenance={"objective": "slicer"}), path)
    points = tmp_path / "lc"
    points.mkdir()
    (points / "points.json").write_text(json.dumps({
        "curve:random_init": {"group": "random_init", "step": 0},
        "curve:logmel_stats": {"group": "logmel_stats", "step": 0},
        "curve:slicer_step00002": {"group": "slicer", "step": 2},
        "final:slicer": {}}))
    args = ["--runs", str(runs), "--root", str(root), "--points", str(points), "--tasks", "keywords",
            "--manifest", "eval_suites/manifests/demo.yaml", "--no-progress"]
    assert geo.main(args) == 0
    df = pd.read_csv(points / "geometry" / "geometry.csv")
    assert set(df.model) == {"random_init", "logmel_stats", "slicer_step00002"} and set(df.task) == {"keywords"}
    assert df.effective_rank.gt(1).all() and df.uniformity.lt(0).all()
    assert (df.separation.isna() | df.separation.gt(0)).all()  # NaN: the tiny split repeats no label
    assert (points / "geometry" / "geometry.png").stat().st_size > 10_000
    assert any((runs / "embeddings").glob("slicer_step00002-*/*/valid.embeddings.npy"))  # the study's cache
    assert geo.main(args + ["--models", "nope"]) == 2
