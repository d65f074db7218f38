"""`flashmm sweep` and multi-core backtests (research/sweep.py, research/parallel.py) on a real local Ray.

Ray is started once for the module, by the runner itself (two CPUs: two workers); the process-pool fallback
and the serial run are compared with it. Data: a synthetic market built so that the earlier and the later
part of the recording disagree about the best configuration, and short slices of the real recordings.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from flashmm.cli import main
from flashmm.config import Config, load_config
from flashmm.core.domain import Instrument
from flashmm.data.events import KIND_SNAP, KIND_TRADE, EventSet, EventWriter, message_bounds
from flashmm.data.loader import load_events
from flashmm.data.readers import write_flashmm
from flashmm.research.backtest import run_backtest, run_one
from flashmm.research.parallel import Job, ParallelRunner, trading_figures
from flashmm.research.sweep import GridError, Objective, configurations, data_set_name, load_grid, run_sweep

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


# ------------------------------------------------------------------------------------------- data
def synthetic_market(path: Path, first_ticks: int, then_ticks: int, seconds: int = 40) -> EventSet:
    """Mid fixed at 100.00 (tick 0.01 = 1 bps); every 0.5 s a trade alternately sells and buys `first_ticks`
    from the mid in the first half of the recording, `then_ticks` in the second; a book snapshot every 0.25 s.
    A symmetric quote h bps from the mid fills on every trade that reaches it and earns h bps a fill (the mid
    never moves): wide quotes earn most where trades reach far, only tight quotes trade where they do not."""
    inst = Instrument("SYN/USD", "SYN", "USD", Decimal("0.01"), Decimal("0.001"))
    w = EventWriter()
    mid, t0, n = 10_000, 1_700_000_000 * 10**9, 0
    book = [(1, mid - i, 50_000) for i in range(1, 21)] + [(-1, mid + i, 50_000) for i in range(1, 21)]
    for q in range(seconds * 4 + 1):
        ts = t0 + q * 250_000_000
        w.message(ts, KIND_SNAP, book, seq=q + 1, seq2=q + 1)
        if q % 2:
            n += 1
            off = first_ticks if ts - t0 < seconds * 10**9 // 2 else then_ticks
            side = 1 if n % 2 else -1
            w.message(ts + 1, KIND_TRADE, [(side, mid + side * off, 20_000)], seq=n)
    es = EventSet(w.array(), inst, "flashmm", [str(path)])
    write_flashmm(es, path)
    return es


def head_slice(es: EventSet, seconds: float, path: Path) -> Path:
    """The first `seconds` of a real recording (whole messages), written as FlashMM's own format."""
    ts = es.events["ts_ns"]
    ends = message_bounds(es.events)
    cut = int(ends[np.searchsorted(ts[ends - 1], ts[0] + int(seconds * 1e9))])
    write_flashmm(EventSet(es.events[:cut].copy(), es.instrument, es.source, es.files, dict(es.rejects)), path)
    return path


@pytest.fixture(scope="module")
def real(data_dir, tmp_path_factory) -> dict[str, Path]:
    """Two short real data sets: the LOBSTER sample (49 s) and the first 60 s of Binance USD-M."""
    d = tmp_path_factory.mktemp("real")
    usdm = load_events([str(data_dir / "binance-usdm-btcusdt-20240808")], d / "cache")
    return {"lobster": data_dir / "lobster-aapl-20120621-head",
            "usdm60": head_slice(usdm, 60.0, d / "usdm60.npz")}


@pytest.fixture(scope="module")
def ray_two_workers(tmp_path_factory):
    """A local Ray with two CPUs started by the runner itself (as `flashmm sweep` does), once for the module;
    later runners in this process find it running and use it."""
    import ray

    es = synthetic_market(tmp_path_factory.mktemp("boot") / "boot.npz", 10, 5, seconds=2)
    runner = ParallelRunner([es], workers=2, backend="ray")
    t0 = time.perf_counter()
    runner.start()
    print(f"\nlocal Ray with 2 workers up in {time.perf_counter() - t0:.1f} s")
    assert ray.is_initialized() and ray.cluster_resources()["CPU"] == 2
    yield runner
    runner.close()
    assert not ray.is_initialized()


def symmetric_base(levels: int = 1) -> Config:
    cfg = Config()
    return cfg.model_copy(update={"strategy": cfg.strategy.model_copy(update={"model": "symmetric",
                                                                             "order_levels": levels})})


def cached(cfg: Config, cache_dir: Path) -> Config:
    return cfg.model_copy(update={"replay": cfg.replay.model_copy(update={"cache_dir": str(cache_dir)})})


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------- the grid
def test_grid_file_in_every_toml_form_gives_the_cartesian_product_in_file_order(tmp_path):
    g = load_grid(write(tmp_path / "g.toml", '"strategy.risk_aversion" = [0.01, 0.05]\n'
                                              'strategy.order_levels = [1, 2, 3]\n'
                                              '[risk]\nmax_position_usdc = [1000.0]\n'))
    assert g.keys == ("strategy.risk_aversion", "strategy.order_levels", "risk.max_position_usdc")
    assert g.size == 6
    pts = g.points()
    assert pts[0] == {"strategy.risk_aversion": 0.01, "strategy.order_levels": 1, "risk.max_position_usdc": 1000.0}
    assert pts[1]["strategy.order_levels"] == 2 and pts[3]["strategy.risk_aversion"] == 0.05
    cfgs = configurations(Config(), g)
    assert [c.strategy.order_levels for c in cfgs] == [1, 2, 3, 1, 2, 3]
    assert all(c.risk.max_position_usdc == 1000.0 for c in cfgs)
    assert cfgs[0].strategy.arrival_decay == Config().strategy.arrival_decay  # the rest from the base


@pytest.mark.parametrize("text, needle", [
    ('"strategy.risk_aversio" = [0.1]', "strategy.risk_aversio: unknown key; did you mean strategy.risk_aversion?"),
    ('"stratgy.risk_aversion" = [0.1]', "unknown section 'stratgy'"),
    ('risk_aversion = [0.1]', "a grid key is section.key"),
    ('"strategy.risk_aversion" = 0.1', "give a list of values to try"),
    ('"strategy.risk_aversion" = []', "an empty list gives no configuration"),
    ('"strategy.risk_aversion" = [0.1', "not valid TOML"),
    ('', "no keys"),
    ('"strategy.order_levels" = [1]\n[strategy]\norder_levels = [2]', "strategy.order_levels: given twice"),
    ('"strategy.risk_aversion" = [0.01, -1.0]', "strategy.risk_aversion = -1.0: Input should be greater than 0"),
    ('"strategy.model" = ["glft", "gltf"]', "strategy.model = 'gltf'"),
])
def test_a_bad_grid_is_one_line_naming_the_file_and_the_key(tmp_path, text, needle):
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(GridError) as exc:
        configurations(Config(), load_grid(path))
    msg = str(exc.value)
    assert needle in msg and str(path) in msg and "\n" not in msg


def test_cli_bad_grid_key_exits_2_with_one_line_before_reading_any_data(tmp_path, capsys):
    grid = write(tmp_path / "g.toml", '"strategy.risk_aversion" = [0.01]\n"strategy.arival_decay" = [0.4]\n')
    rc = main(["sweep", "--data", str(tmp_path / "no-such-data"), "--grid", str(grid), "--json", str(tmp_path / "o.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err == (f"flashmm: grid file {grid}: strategy.arival_decay: unknown key; did you mean "
                   "strategy.arrival_decay?")
    assert not (tmp_path / "o.json").exists()


# ------------------------------------------------------------------------------------------- walk-forward
def test_the_sweep_chooses_on_the_earlier_part_only(ray_two_workers, tmp_path):
    """Trades reach 10 ticks in the first half and 5 in the second: quoting 8 bps from the mid earns most
    on the first half and nothing on the second, 2 bps earns less on the first and all on the second. The
    sweep (split 0.5) must choose 8 bps, though 2 bps scores better on the later part; with the halves
    swapped it must choose 2 bps."""
    grid = load_grid(write(tmp_path / "g.toml", '"strategy.symmetric_half_spread_bps" = [2.0, 8.0]\n'))
    for first, then, want, other in ((10, 5, 8.0, 2.0), (5, 10, 2.0, 8.0)):
        es = synthetic_market(tmp_path / f"syn-{first}-{then}.npz", first, then)
        r = run_sweep(symmetric_base(), [es], grid, 0.5, workers=2, backend="ray", score_all=True,
                      objective=Objective(min_fills=0),  # chosen by PnL, not because the other never traded
                      show_progress=False, json_path=tmp_path / "s.json")
        assert r["parallel"]["backend"] == "ray" and r["parallel"]["workers"] == 2
        by_h = {e["overrides"]["strategy.symmetric_half_spread_bps"]: e for e in r["configurations"][:2]}
        assert r["chosen"]["overrides"] == {"strategy.symmetric_half_spread_bps": want}
        # the construction: the two parts disagree
        earlier = {h: e["earlier"]["summary"]["total_pnl"] for h, e in by_h.items()}
        later = {h: e["later"]["summary"]["total_pnl"] for h, e in by_h.items()}
        assert earlier[want] > earlier[other] >= 0, earlier
        assert later[other] > later[want] >= 0, later
        # each part traded only where it should: the earlier runs stop at the split, the later start there
        for e in r["configurations"]:
            assert e["earlier"]["data_sets"][0]["traded_until_fraction"] == 0.5
            assert e["earlier"]["data_sets"][0]["traded_from_fraction"] == 0.0
            assert e["later"]["data_sets"][0]["traded_from_fraction"] == 0.5
            assert e["later"]["data_sets"][0]["traded_until_fraction"] == 1.0
        # 20 s a part, a trade every 0.5 s: each fill of a 2-unit order earns h bps of 100 USD, never more
        for h, e in by_h.items():
            for part in ("earlier", "later"):
                d = e[part]["data_sets"][0]
                assert d["fills"] <= 41
                assert d["pnl_usdc"] == pytest.approx(d["fills"] * 2 * 100 * h * 1e-4, abs=1e-6)
        assert json.loads((tmp_path / "s.json").read_text())["chosen"]["index"] == r["chosen"]["index"]


@pytest.fixture(scope="module")
def real_sweep(ray_two_workers, real, tmp_path_factory):
    """Two configurations of the default (GLFT, the shipped model) on two short real recordings, on Ray."""
    d = tmp_path_factory.mktemp("real-sweep")
    grid = load_grid(write(d / "g.toml", '"strategy.risk_aversion" = [0.02, 0.2]\n'))
    data = []
    for key in ("lobster", "usdm60"):
        es = load_events([str(real[key])], d / "cache")
        es.meta["name"] = data_set_name([str(real[key])])  # as the command line names them
        data.append(es)
    r = run_sweep(Config(), data, grid, 0.6, workers=2, backend="ray", objective=Objective(min_fills=0),
                  score_all=True, show_progress=False, json_path=d / "s.json", out_config=d / "best.toml")
    return {"result": r, "data": data, "grid": grid, "dir": d}


def test_the_written_configuration_loads_and_reproduces_the_scored_figure(real_sweep):
    r, data = real_sweep["result"], real_sweep["data"]
    assert r["chosen"] is not None and r["config_written"]
    cfg = load_config(r["config_written"])  # the ordinary loader: a complete, valid config.toml
    k = r["chosen"]["index"] - 1
    assert cfg == configurations(Config(), real_sweep["grid"])[k]
    for d, row in zip(data, r["chosen"]["later"], strict=True):
        section, _ = run_one(cfg, d, trade_from_fraction=r["split"])
        assert section["pnl_usdc"] == row["chosen_pnl_usdc"]
        assert section["fills"] == row["chosen_fills"]
    assert any(row["chosen_fills"] for row in r["chosen"]["later"])  # a figure worth reproducing
    text = Path(r["config_written"]).read_text()
    assert text.startswith("# Chosen by flashmm sweep") and "token: not written" in text


def test_the_process_pool_fallback_gives_the_same_sweep_as_ray(real_sweep):
    d = real_sweep["dir"]
    r_ray = real_sweep["result"]
    r_pool = run_sweep(Config(), real_sweep["data"], real_sweep["grid"], 0.6, workers=2, backend="process",
                       objective=Objective(min_fills=0), score_all=True, show_progress=False)
    assert r_pool["parallel"]["backend"] == "process"

    def figures(r):
        return [{part: [{k: v for k, v in x.items() if k != "wall_s"} for x in e[part]["data_sets"]]
                 for part in ("earlier", "later")} for e in r["configurations"]]

    assert figures(r_pool) == figures(r_ray)
    assert r_pool["chosen"] == r_ray["chosen"]
    assert sum(e["earlier"]["summary"]["fills"] for e in r_ray["configurations"]) > 0
    assert (d / "s.json").exists()


def test_a_model_that_cannot_load_stops_the_sweep_with_one_line(ray_two_workers, real, tmp_path, capsys):
    grid = write(tmp_path / "g.toml", '"strategy.alpha" = ["model"]\n"model.required" = [true]\n'
                                      '"model.path" = ["/nonexistent/model.pt2"]\n')
    rc = main(["sweep", "--data", str(real["lobster"]), "--grid", str(grid), "--no-progress",
               "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert err[-1].startswith("flashmm: ") and "/nonexistent/model.pt2" in err[-1]


# ------------------------------------------------------------------------------------------- backtests
def test_a_parallel_backtest_equals_the_serial_one(ray_two_workers, real, tmp_path):
    """`flashmm backtest` with several data sets: one by one in this process, on Ray's two workers, in a
    process pool: every trading figure identical (pricing with the shipped model, so torch runs in the workers)."""
    sets = [[str(real["usdm60"])], [str(real["lobster"])]]
    cfg = cached(Config(), tmp_path / "cache")
    cfg = cfg.model_copy(update={"strategy": cfg.strategy.model_copy(update={"alpha": "model"})})
    reports = {}
    for name, workers, backend in (("serial", 1, "auto"), ("ray", 2, "ray"), ("process", 2, "process")):
        reports[name] = run_backtest(cfg, sets, "flashmm", tmp_path / f"{name}.json",
                                     show_progress=False, workers=workers, backend=backend)
        assert reports[name]["parallel"]["backend"] == name
    serial = [trading_figures(s) for s in reports["serial"]["data_sets"]]
    # trading to compare (the 60 s USD-M slice may see no fill under today's defaults; the AAPL fixture fills),
    # priced with the model on both
    assert sum(s["fills"] for s in serial) > 0 and all(s["model"] != "FALLBACK (no model)" for s in serial)
    for name in ("ray", "process"):
        assert [trading_figures(s) for s in reports[name]["data_sets"]] == serial, name
    workers = {t["worker"] for t in reports["process"]["parallel"]["tasks"]}
    assert len(workers) == 2  # both data sets ran at once, each in its own process


def test_bench_parallel_reports_speedup_load_and_identical_results(ray_two_workers, real, tmp_path):
    out = tmp_path / "bench.json"
    rc = main(["bench", "parallel", "--data", str(real["lobster"]), "--data", str(real["usdm60"]),
               "--configs", "2", "--model", "none", "--json", str(out)])
    r = json.loads(out.read_text())
    assert rc == 0 and r["identical_results"] is True and not r["failed"]
    assert r["tasks"] == 4 and r["workers"] == 2 and r["backend"] == "ray"
    assert r["serial_wall_s"] > 0 and r["parallel_wall_s"] > 0 and r["speedup"] > 0
    assert set(r["loadavg_1_5_15"]) == {"before_serial", "before_parallel", "after"}


# ------------------------------------------------------------------------------------------- a Ray cluster
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_sweep_joins_an_existing_ray_cluster_with_address(real_sweep, real, tmp_path):
    """`ray start --head` (token authentication on, as Ray starts clusters by default), then `flashmm sweep
    --address` in another process: the same choice and figures as the in-process Ray."""
    port = _free_port()
    env = {**os.environ, "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # a short folder: Ray's Unix sockets live under it, and a socket path is limited to 107 bytes
    temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    head_log = (tmp_path / "head.log").open("wb")
    head = subprocess.Popen(
        [str(VENV_BIN / "ray"), "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port", str(port),
         "--ray-client-server-port", str(_free_port()), "--dashboard-port", str(_free_port()),
         "--dashboard-agent-listen-port", str(_free_port()), "--num-cpus", "2", "--include-dashboard=false",
         "--disable-usage-stats", "--temp-dir", str(temp)],
        env=env, stdout=head_log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        d = real_sweep["dir"]
        out = tmp_path / "cluster.json"
        cmd = [str(VENV_BIN / "flashmm"), "sweep", "--data", str(real["lobster"]), "--data", str(real["usdm60"]),
               "--grid", str(d / "g.toml"), "--split", "0.6", "--min-fills", "0", "--score-all", "--no-progress",
               "--address", f"127.0.0.1:{port}", "--json", str(out), "--cache-dir", str(d / "cache")]
        try:
            p = subprocess.run(cmd, env={**env, "RAY_AUTH_MODE": "token"}, capture_output=True, text=True,
                               timeout=180)
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"sweep on the cluster timed out; ray start said: {(tmp_path / 'head.log').read_text()[-3000:]}"
                        f"; the sweep: {str(exc.stderr)[-2000:]}")
        assert p.returncode == 0, p.stderr[-3000:]
        r = json.loads(out.read_text())
        assert r["parallel"]["backend"] == "ray" and r["parallel"]["address"] == f"127.0.0.1:{port}"
        assert r["parallel"]["workers"] == 2  # the cluster's CPUs
        mine = real_sweep["result"]
        assert r["chosen"] == mine["chosen"]
        assert ([e["earlier"]["summary"] for e in r["configurations"]]
                == [e["earlier"]["summary"] for e in mine["configurations"]])
    finally:
        head.terminate()  # ray start --block stops its processes on SIGTERM
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, 9)
            head.wait()
        head_log.close()
        shutil.rmtree(temp, ignore_errors=True)


# ------------------------------------------------------------------------------------------- without Ray
def test_without_ray_backtests_fall_back_to_a_process_pool_with_the_same_results(real, tmp_path):
    """In a Python where `import ray` fails: `flashmm backtest --workers 2` runs in a process pool, and
    `--backend ray` is refused in one line (exit 2); the figures equal this process's serial run."""
    sets = ["--data", str(real["usdm60"]), "--data", str(real["lobster"])]
    no_ray = "import sys; sys.modules['ray'] = None; from flashmm.cli import main; sys.exit(main(sys.argv[1:]))"
    base = [sys.executable, "-c", no_ray, "backtest", *sets, "--model", "none", "--cache-dir", str(tmp_path / "c")]
    p = subprocess.run([*base, "--workers", "2", "--report", str(tmp_path / "pool.json")], capture_output=True,
                       text=True, timeout=240, cwd=ROOT)
    assert p.returncode == 0, p.stderr[-3000:]
    refused = subprocess.run([*base, "--backend", "ray", "--report", str(tmp_path / "x.json")], capture_output=True,
                             text=True, timeout=60, cwd=ROOT)
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("flashmm: Ray is not installed (pip install 'flashmm[ray]'); "
                                      "--backend process needs no Ray")
    pool = json.loads((tmp_path / "pool.json").read_text())
    assert pool["parallel"]["backend"] == "process" and pool["parallel"]["workers"] == 2
    cfg = Config().model_copy(update={"model": Config().model.model_copy(update={"path": "none"})})
    serial = run_backtest(cached(cfg, tmp_path / "c"), [[str(real["usdm60"])], [str(real["lobster"])]], "flashmm",
                          tmp_path / "s.json", show_progress=False)
    assert [trading_figures(s) for s in pool["data_sets"]] == [trading_figures(s) for s in serial["data_sets"]]


def test_a_configuration_equal_to_another_is_replayed_once(ray_two_workers, tmp_path):
    """The base is a point of the grid (symmetric at its default 2.5 bps): its figures are shared, not rerun."""
    es = synthetic_market(tmp_path / "syn.npz", 10, 5, seconds=10)
    grid = load_grid(write(tmp_path / "g.toml", '"strategy.symmetric_half_spread_bps" = [2.5, 8.0]\n'))
    r = run_sweep(symmetric_base(), [es], grid, 0.5, workers=2, backend="ray", objective=Objective(min_fills=0),
                  show_progress=False)
    first, base = r["configurations"][0], r["configurations"][-1]
    assert base["label"] == "base" and base["same_as"] == "#1" and first["same_as"] is None
    assert base["earlier"] == first["earlier"]
    # 2 configurations on the earlier part, then the chosen (8 bps) and the base (= #1) on the later part
    assert r["chosen"]["index"] == 2 and r["parallel"]["tasks"] == 4
