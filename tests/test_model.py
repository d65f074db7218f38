"""The direction model: labels and windows, time splits, the model file (export, load, corruption),
evaluation numbers worked by hand, promotion, inference benchmark. Tiny models on tiny data (fast)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from flashmm.model import artifact
from flashmm.model.artifact import ModelError
from flashmm.model.inputs import MODEL_INPUTS, N_INPUTS
from flashmm.research.dataset import Samples, labels, windows
from flashmm.research.evaluate import EvalSet, ImbalanceLogit, eval_set, evaluate, scores
from flashmm.research.train import (
    ARCHITECTURES,
    TrainData,
    build_network,
    fit,
    rebuild_eager,
    split_samples,
    train,
)

STEP_NS = 500_000_000
IMB = MODEL_INPUTS.index("imbalance_1")


def _samples(times_idx, mids, x=None, source="synthetic") -> Samples:
    times = np.asarray(times_idx, dtype=np.int64) * STEP_NS + 1_700_000_000_000_000_000
    n = len(times)
    if x is None:
        x = np.arange(n * N_INPUTS, dtype=np.float32).reshape(n, N_INPUTS)
    return Samples(source, times, x.astype(np.float32), np.asarray(mids, dtype=np.float64), 500.0)


def _synthetic(n: int, seed: int, source: str, horizon: int = 4, band: float = 1.0) -> Samples:
    """A random-walk mid (steps of 0 or +-2 ticks, about 2 bps) whose future move is written into imbalance_1:
    +0.8 before an up move, -0.8 before a down move, 0 before none (plus noise). A perfect model exists."""
    rng = np.random.default_rng(seed)
    steps = rng.choice([-2.0, 0.0, 0.0, 0.0, 2.0], size=n)
    mids = 10_000.0 + np.cumsum(steps)  # back to the same tick = no move at all
    y = labels(mids, horizon, band)
    x = rng.normal(0, 0.3, size=(n, N_INPUTS)).astype(np.float32)
    x[:, IMB] = np.where(y == 2, 0.8, np.where(y == 0, -0.8, 0.0)) + rng.normal(0, 0.05, n)
    return _samples(np.arange(n), mids, x, source)


@pytest.fixture(scope="module")
def tiny_data() -> TrainData:
    return TrainData([split_samples(_synthetic(1500, 1, "syn-a"), band_bps=1.0),
                      split_samples(_synthetic(1500, 2, "syn-b"), band_bps=1.0)], cadence_ms=500.0, band_bps=1.0)


# ---- labels and windows -------------------------------------------------------------------------------


def test_labels_by_hand():
    # mid 10000 ticks: 1 tick = 1 bps. Moves over 1 step: +2, 0, -3, +0.5, then no future.
    mids = np.array([10000.0, 10002.0, 10002.0, 9999.0, 9999.5])
    y = labels(mids, 1, 1.0)
    assert y.tolist() == [2, 1, 0, 1, -1]
    # over 2 steps: +2, -3, -2.5 (bps of the start mid), then two without a future
    assert labels(mids, 2, 1.0).tolist() == [2, 0, 0, -1, -1]
    assert labels(mids[:2], 2, 1.0).tolist() == [-1, -1]


def test_windows_drop_holes():
    # grid indices 0..5, a hole at 6, then 7..11: two runs (rows 0-5 and rows 6-10)
    t_idx = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11]
    mids = 10000.0 + np.array([0, 2, 2, 0, 5, 5, 0, 0, 3, 3, -4], dtype=np.float64)
    s = _samples(t_idx, mids)
    d = windows(s, 3, 2, 1.0)
    # a window of 3 ending at row t needs rows t-2..t and t+2 in the same run: t in {2, 3} and {8}
    assert d.times_ns.tolist() == s.times_ns[[2, 3, 8]].tolist()
    np.testing.assert_array_equal(d.x[0], s.x[[0, 1, 2]])
    np.testing.assert_array_equal(d.x[2], s.x[[6, 7, 8]])
    # labels: row 2 -> row 4: +3 bps up (of 10002); row 3 -> row 5: +5 up; row 8 -> row 10: -7 down
    assert d.y.tolist() == [2, 2, 0]
    np.testing.assert_allclose(d.move_bps, [(10005 - 10002) / 10002 * 1e4, 5.0, (9996 - 10003) / 10003 * 1e4])
    # past move over H (for persistence): row 2 vs row 0 = +2 bps; row 3 vs row 1: -2 bps; row 8 vs row 6: +3
    e = eval_set(s, d, 2, 1.0)
    np.testing.assert_allclose(e.past_move_bps, [2.0, (10000 - 10002) / 10002 * 1e4, 3.0])
    # the hole: row 7's past (row 5 is two grid steps + a hole away) is unknown
    d2 = windows(s, 2, 1, 1.0)
    e2 = eval_set(s, d2, 2, 1.0)
    i7 = d2.times_ns.tolist().index(int(s.times_ns[7]))
    assert np.isnan(e2.past_move_bps[i7])


def _assert_no_leak(split, window: int, horizon: int) -> None:
    tr, va, te = (p.data.times_ns for p in (split.train, split.val, split.test))
    embargo = (window + horizon) * STEP_NS
    assert len(tr) and len(va) and len(te)
    assert tr.max() + embargo < va.min()
    assert va.max() + embargo < te.min()
    # no training label reaches into the first validation window (window starts W-1 steps before its end)
    assert tr.max() + horizon * STEP_NS < va.min() - (window - 1) * STEP_NS
    assert va.max() + horizon * STEP_NS < te.min() - (window - 1) * STEP_NS


def test_time_split_has_no_leakage(tiny_data):
    for s in tiny_data.sources:
        _assert_no_leak(s, tiny_data.window, tiny_data.horizon_steps)
    # pooled parts keep every sample's source and past move aligned
    tr = tiny_data.part("train")
    assert len(tr.sources) == len(tr.data.y) == len(tr.past_move_bps)
    assert set(tr.source_names()) == {"syn-a", "syn-b"}


def test_time_split_on_real_data_has_no_leakage(data_dir, tmp_path):
    from flashmm.data.loader import load_events
    from flashmm.research.dataset import samples_from_events

    s = samples_from_events(load_events([data_dir / "binance-usdm-btcusdt-20240808"], tmp_path), 500.0)
    _assert_no_leak(split_samples(s), 8, 4)


# ---- the model file -----------------------------------------------------------------------------------


def _meta(**kw):
    m = {"window": 8, "cadence_ms": 500.0, "horizon_steps": 4, "horizon_s": 2.0, "band_bps": 1.0,
         "architecture": "mlp_last", "arch_config": {"hidden": None}, "feature_mean": [0.0] * N_INPUTS,
         "feature_std": [1.0] * N_INPUTS}
    m.update(kw)
    return m


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_export_load_matches_eager(arch, tmp_path):
    torch.manual_seed(3)
    rng = np.random.default_rng(3)
    mean, std = rng.normal(size=N_INPUTS), rng.uniform(0.5, 2.0, size=N_INPUTS)
    model = artifact.Standardised(build_network(arch, 8), mean, std).eval()
    x = rng.normal(size=(64, 8, N_INPUTS)).astype(np.float32) * std.astype(np.float32) + mean.astype(np.float32)
    path = tmp_path / f"{arch}.pt2"
    artifact.save(model, torch.from_numpy(x[:1]), _meta(architecture=arch), path)
    loaded = artifact.load(path)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(loaded.predict_proba_batch(x), want, atol=1e-5)
    one = loaded.predict_proba(x[5])
    assert one.shape == (3,) and abs(float(one.sum()) - 1) < 1e-5
    np.testing.assert_allclose(one, want[5], atol=1e-5)
    np.testing.assert_allclose(rebuild_eager(loaded)(torch.from_numpy(x)).detach().numpy(), want, atol=1e-5)
    assert loaded.meta["inputs"] == list(MODEL_INPUTS) and loaded.meta["file_bytes"] == path.stat().st_size
    assert path.stat().st_size < 200_000
    with pytest.raises(ValueError):
        loaded.predict_proba(x[5][:4])


@pytest.mark.parametrize("arch", ("mlp_last", "tcn"))
def test_a_model_with_an_expected_move_is_format_version_2(arch, tmp_path):
    """Four outputs: the probabilities and the expected move in bps (the net's fourth output times the move
    scale); a three-output model is still written and read as version 1."""
    torch.manual_seed(4)
    rng = np.random.default_rng(4)
    model = artifact.Standardised(build_network(arch, 8, n_out=4), np.zeros(N_INPUTS), np.ones(N_INPUTS),
                                  move_scale_bps=2.5).eval()
    x = rng.normal(size=(16, 8, N_INPUTS)).astype(np.float32)
    path = tmp_path / "v2.pt2"
    artifact.save(model, torch.from_numpy(x[:2]), _meta(architecture=arch), path)
    loaded = artifact.load(path)
    assert loaded.meta["format_version"] == 2 and loaded.has_expected_move
    assert loaded.meta["outputs"] == list(artifact.OUTPUTS_V2)
    out = loaded.predict_proba_batch(x)
    with torch.no_grad():
        raw = model.logits(torch.from_numpy(x)).numpy()
    assert out.shape == (16, 4)
    np.testing.assert_allclose(out[:, :3].sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[:, 3], raw[:, 3] * 2.5, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.predict_proba(x[3]), out[3], atol=1e-5)
    np.testing.assert_allclose(rebuild_eager(loaded)(torch.from_numpy(x)).detach().numpy(), out, atol=1e-5)
    v1 = tmp_path / "v1.pt2"
    artifact.save(artifact.Standardised(build_network(arch, 8), np.zeros(N_INPUTS), np.ones(N_INPUTS)),
                  torch.from_numpy(x[:2]), _meta(architecture=arch), v1)
    one = artifact.load(v1)
    assert one.meta["format_version"] == 1 and not one.has_expected_move and one.predict_proba(x[0]).shape == (3,)
    # a version 2 file whose program gives three outputs is refused, naming the file
    bad = tmp_path / "bad.pt2"
    _rewrite_meta(v1, bad, format_version=2)
    with pytest.raises(ModelError, match="bad.pt2.*expected move"):
        artifact.load(bad)


@pytest.fixture(scope="module")
def good_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "good.pt2"
    torch.manual_seed(0)
    artifact.save(artifact.Standardised(build_network("mlp_last", 8), np.zeros(N_INPUTS), np.ones(N_INPUTS)),
                  torch.zeros(1, 8, N_INPUTS), _meta(), path)
    return path


def test_corrupt_or_missing_files_raise_model_error(good_file, tmp_path):
    data = good_file.read_bytes()
    cases = {
        "missing.pt2": None,
        "truncated.pt2": data[: len(data) // 2],
        "random.pt2": np.random.default_rng(0).bytes(len(data)),
        "empty.pt2": b"",
    }
    for name, content in cases.items():
        p = tmp_path / name
        if content is not None:
            p.write_bytes(content)
        with pytest.raises(ModelError) as ei:
            artifact.load(p)
        assert str(p) in str(ei.value), name
    # a zip that is not a model
    z = tmp_path / "zip.pt2"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ModelError, match="zip.pt2"):
        artifact.load(z)
    # a directory
    with pytest.raises(ModelError, match="not a file"):
        artifact.load(tmp_path)


def _rewrite_meta(src, dst, **changes):
    extra = {artifact.META_FILE: ""}
    ep = torch.export.load(str(src), extra_files=extra)
    meta = json.loads(extra[artifact.META_FILE])
    meta.update(changes)
    torch.export.save(ep, str(dst), extra_files={artifact.META_FILE: json.dumps(meta)})


def test_wrong_version_or_inputs_raise_model_error(good_file, tmp_path):
    v = tmp_path / "v99.pt2"
    _rewrite_meta(good_file, v, format_version=99)
    with pytest.raises(ModelError, match="format version 99") as ei:
        artifact.load(v)
    assert str(v) in str(ei.value)
    inp = tmp_path / "inputs.pt2"
    _rewrite_meta(good_file, inp, inputs=list(MODEL_INPUTS[:-1]) + ["something_else"])
    with pytest.raises(ModelError, match="inputs differ.*queue_log_ratio"):
        artifact.load(inp)
    order = tmp_path / "order.pt2"
    _rewrite_meta(good_file, order, inputs=list(reversed(MODEL_INPUTS)))
    with pytest.raises(ModelError, match="order differs"):
        artifact.load(order)
    # a torch.export file with no FlashMM metadata
    bare = tmp_path / "bare.pt2"
    torch.export.save(torch.export.load(str(good_file)), str(bare))
    with pytest.raises(ModelError, match="not a FlashMM model"):
        artifact.load(bare)


# ---- evaluation ---------------------------------------------------------------------------------------


def test_evaluate_numbers_by_hand():
    y = np.array([2, 2, 0, 0, 1, 1])
    probs = np.array([
        [0.1, 0.2, 0.7],  # up, right (conf 0.7)
        [0.5, 0.1, 0.4],  # down, wrong: true up; direction wrong (conf 0.5)
        [0.6, 0.3, 0.1],  # down, right (conf 0.6)
        [0.3, 0.4, 0.3],  # flat, wrong: true down; p_up == p_down: a tie, half a directional hit (conf 0.4)
        [0.2, 0.7, 0.1],  # flat, right (conf 0.7)
        [0.4, 0.35, 0.25],  # down, wrong: true flat (conf 0.4)
    ])
    s = scores(probs, y)
    assert s["directional_accuracy"] == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    assert s["n_directional"] == 4
    # when called (argmax up/down on a true move): s0 right, s1 wrong, s2 right (s3's argmax is flat)
    assert s["directional_accuracy_when_called"] == pytest.approx(2 / 3) and s["n_directional_called"] == 3
    assert s["accuracy"] == pytest.approx(0.5)
    assert s["confusion"] == [[1, 1, 0], [1, 1, 0], [1, 0, 1]]
    # precision/recall: down 1/3, 1/2 -> F1 0.4; flat 1/2, 1/2 -> 0.5; up 1/1, 1/2 -> 2/3
    assert s["per_class"]["down"]["precision"] == pytest.approx(1 / 3)
    assert s["per_class"]["down"]["f1"] == pytest.approx(0.4)
    assert s["per_class"]["flat"]["f1"] == pytest.approx(0.5)
    assert s["per_class"]["up"]["recall"] == pytest.approx(0.5)
    assert s["macro_f1"] == pytest.approx((0.4 + 0.5 + 2 / 3) / 3)
    # ECE: bins 0.4 (2 wrong: |0 - 0.4|), 0.5 (1 wrong: 0.5), 0.6 (1 right: 0.4), 0.7 (2 right: 0.3)
    assert s["ece"] == pytest.approx((2 * 0.4 + 0.5 + 0.4 + 2 * 0.3) / 6)
    bins = {round(b["lo"], 1): b for b in s["reliability"] if b["n"]}
    assert set(bins) == {0.4, 0.5, 0.6, 0.7} and bins[0.7]["n"] == 2 and bins[0.7]["accuracy"] == 1.0

    # the same through evaluate(), with the baselines on an EvalSet
    from flashmm.research.dataset import Dataset

    d = Dataset(np.zeros((6, 8, N_INPUTS), np.float32), y, np.arange(6, dtype=np.int64),
                np.array([3.0, 2.0, -2.0, -4.0, 0.1, -0.2]), "hand")
    e = EvalSet(d, np.array([2.0, -2.0, -2.0, np.nan, 0.5, 3.0]), np.array(["hand"] * 6, dtype=object), 1.0)
    ev = evaluate(probs, e)
    assert ev["macro_f1"] == pytest.approx(s["macro_f1"])
    assert ev["baselines"]["always_flat"]["directional_accuracy"] == 0.5
    assert ev["baselines"]["always_flat"]["accuracy"] == pytest.approx(2 / 6)
    # persistence: up, down, down, flat (unknown), flat, up -> directional: right, wrong, right, tie
    assert ev["baselines"]["persistence"]["directional_accuracy"] == pytest.approx(2.5 / 4)
    # signal: sign(p_up - p_down) * move: +3, -2, +2, 0 (tie), -0.1 (down call, move +0.1), +0.2 (down, -0.2)
    assert ev["signal_bps"] == pytest.approx((3 - 2 + 2 + 0 - 0.1 + 0.2) / 6)


def test_logistic_baseline_learns_imbalance(tiny_data):
    lg = ImbalanceLogit().fit(tiny_data.part("train").data)
    te = tiny_data.part("test")
    s = scores(lg.predict_proba(te.data.x), te.data.y)
    assert s["directional_accuracy"] > 0.95


def test_training_is_deterministic(tiny_data):
    a = fit("mlp_last", tiny_data, seed=5, max_epochs=2, patience=2)
    b = fit("mlp_last", tiny_data, seed=5, max_epochs=2, patience=2)
    for (ka, va), (kb, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert a.val["directional_accuracy"] > 0.9  # the synthetic signal is learnable: by the class head
    assert a.val["move"]["directional_accuracy"] > 0.9 and a.val["move"]["ic"] > 0.5  # and by the expected move


# ---- training, promotion, scoring a file ---------------------------------------------------------------


class _SignNet(nn.Module):
    """Logits from imbalance_1 of the last row: sign +1 is a perfect model on the synthetic data, -1 the
    perfectly wrong one."""

    def __init__(self, sign: float) -> None:
        super().__init__()
        self.sign = sign

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        imb = z[:, -1, IMB] * self.sign
        return torch.stack([20 * (-imb - 0.4), torch.zeros_like(imb), 20 * (imb - 0.4)], dim=1)


def _save_sign_model(path, sign: float) -> None:
    m = artifact.Standardised(_SignNet(sign), np.zeros(N_INPUTS), np.ones(N_INPUTS))
    artifact.save(m, torch.zeros(2, 8, N_INPUTS), _meta(architecture=f"sign{sign:+g}"), path)


def test_train_writes_model_and_card(tiny_data, tmp_path):
    r = train([], tmp_path / "flashmm.pt2", data=tiny_data, architectures=("mlp_last", "tcn"), max_epochs=2,
              patience=1, bench=False, log=None, command="pytest tiny")
    assert r.artifact_path.exists() and r.card_path == tmp_path / "README.md"
    m = artifact.load(r.artifact_path)
    assert m.meta["architecture"] in ("mlp_last", "tcn") and set(m.meta["metrics"]["candidates"]) == {"mlp_last", "tcn"}
    assert m.meta["val_directional_accuracy"] > 0.9 and len(m.meta["feature_mean"]) == N_INPUTS
    assert set(m.meta["ranges"]) == {"syn-a", "syn-b"} and m.meta["ranges"]["syn-a"]["test"]["n"] > 0
    card = r.card_path.read_text()
    for part in ("pytest tiny", "## Held-out results", "Confusion", "calibration", "persistence", "logistic", "syn-b",
                 "online alpha", "linear regression", "## Promotion log"):
        assert part in card, part
    # eval-model on the same data: the test slice under the model's own split
    from flashmm.research.evaluate import eval_model

    out = eval_model(r.artifact_path, ["sim:120:3"], None, tmp_path / "eval.json")
    assert json.loads((tmp_path / "eval.json").read_text())["pooled"]["n"] == out["pooled"]["n"] > 0
    assert "logistic" in out["pooled"]["baselines"]
    from flashmm.research.evaluate import report_lines

    text = "\n".join(report_lines(out))
    for part in ("sign of imbalance", "linear regression", "logistic regression", "online alpha",
                 "model - sign of imbalance", "IC ", "bps"):
        assert part in text, part
    assert {"model", "imbalance_sign", "linear_regression", "logistic", "online_alpha"} <= set(
        out["pooled"]["move"]["predictors"])


def test_promote_if_better_keeps_the_better_model(tiny_data, tmp_path):
    current = tmp_path / "flashmm.pt2"
    # 1. the current model is perfectly wrong: the candidate replaces it
    _save_sign_model(current, -1.0)
    r = train([], tmp_path / "candidate.pt2", data=tiny_data, architectures=("mlp_last",), max_epochs=2, patience=1,
              promote_if_better=True, bench=False, log=None)
    assert r.promotion["promoted"] and r.promotion["comparable"]
    assert r.promotion["candidate"]["directional_accuracy"] > r.promotion["current"]["directional_accuracy"]
    assert current.read_bytes() == (tmp_path / "candidate.pt2").read_bytes()
    card = (tmp_path / "README.md").read_text()
    assert "**promoted**" in card and "## Held-out results" in card
    # 2. the current model is perfect: the candidate (at best tied) does not replace it; the log grows
    _save_sign_model(current, +1.0)
    before = current.read_bytes()
    r2 = train([], current, data=tiny_data, architectures=("mlp_last",), max_epochs=2, patience=1,
               promote_if_better=True, bench=False, log=None)
    assert not r2.promotion["promoted"]
    assert r2.promotion["current"]["directional_accuracy"] == 1.0
    assert current.read_bytes() == before
    assert not (tmp_path / "flashmm.candidate.pt2").exists()
    card2 = (tmp_path / "README.md").read_text()
    assert "**promoted**" in card2 and "**kept current**" in card2  # the earlier entry is kept
    # 3. an unreadable current model is replaced
    current.write_bytes(b"garbage")
    r3 = train([], tmp_path / "c3.pt2", data=tiny_data, architectures=("mlp_last",), max_epochs=1, patience=1,
               promote_if_better=True, current=current, bench=False, log=None)
    assert r3.promotion["promoted"] and "unusable" in r3.promotion["reason"]
    artifact.load(current)


def test_bench_inference(good_file, tmp_path):
    from flashmm.ops.bench_inference import bench_inference

    r = bench_inference(good_file, tmp_path / "b.json", n=200, aoti=False)
    assert json.loads((tmp_path / "b.json").read_text())["file_bytes"] == good_file.stat().st_size
    for k in ("eager", "exported", "predict_proba"):
        assert r["single_sample"][k]["p99_us"] > 0
    assert r["eager_vs_exported_max_abs_diff"] < 1e-5 and r["rss_mb_model_loaded"] > 0
