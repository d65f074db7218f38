"""`flashmm sweep`: parameters chosen on data, walk-forward, every backtest a Ray task (or a process).

Every configuration of a grid is backtested on every data set, trading only on the EARLIER part of each
recording by time ([0, split)); one configuration is chosen there by a stated objective; it is then scored,
beside the base configuration, on the LATER part ([split, 1)), which no choice has looked at (book, features
and model follow the market from the start of the recording, so they are warm when trading starts).

The grid file (TOML) maps configuration keys, `section.key` as in config.toml, to the list of values to try;
the configurations are the cartesian product, applied on top of the base configuration (`--config`, else
the built-in defaults) and validated by the same models as config.toml:

    # sweep.toml
    "strategy.risk_aversion" = [0.01, 0.02, 0.05]
    "strategy.arrival_decay" = [0.4, 1.2]
    [risk]
    max_position_usdc = [1000.0, 2000.0]     # a table is the same as "risk.max_position_usdc"

Objective (stated in the JSON and the table): among the eligible configurations, the largest `total_pnl`
(PnL summed over the data sets on the earlier part: the money this configuration would have made on them),
or with `--objective worst_pnl` the largest PnL of its worst data set (robust: what the issue's "PnL >= 0
on every data set" asks). Eligible: the engine did not fault, max |inventory| stayed within
`--max-inventory-pct` of capital on every data set (default 2 %, the risk target), and at least
`--min-fills` fills on every data set (a configuration that never trades is not a market maker's answer).
Ties go to the smaller max |inventory|, then to the earlier configuration in grid order.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from pydantic import ValidationError

from flashmm.config import ENV_PREFIX, Config, ConfigError, _env_overrides, read_toml_file, render_toml
from flashmm.data.events import EventSet

OBJECTIVES = {
    "total_pnl": "PnL summed over the data sets on the earlier part",
    "worst_pnl": "PnL of the worst data set on the earlier part",
}
DEFAULT_LABEL = "base"


class GridError(ConfigError):
    """A grid file that cannot be used: one line naming the file and the key."""


@dataclass(frozen=True)
class Grid:
    path: str
    keys: tuple[str, ...]  # "section.key", in file order
    values: tuple[tuple[Any, ...], ...]

    @property
    def size(self) -> int:
        return math.prod(len(v) for v in self.values)

    def points(self) -> list[dict[str, Any]]:
        """The cartesian product in file order, the last key changing fastest."""
        return [dict(zip(self.keys, combo, strict=True)) for combo in itertools.product(*self.values)]


def _flatten(table: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in table.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def load_grid(path: str | Path) -> Grid:
    """Read and check the shape of a grid file; values are checked by `configurations`."""
    p = Path(path)
    raw = read_toml_file(p, "grid file", GridError)
    keys: list[str] = []
    values: list[tuple[Any, ...]] = []
    sections = Config.model_fields
    for key, v in _flatten(raw):
        parts = key.split(".")
        if len(parts) != 2:
            raise GridError(f"grid file {p}: {key}: a grid key is section.key, e.g. strategy.risk_aversion")
        section, name = parts
        if section not in sections:
            raise GridError(f"grid file {p}: {key}: unknown section {section!r} (sections: {', '.join(sections)})")
        fields = sections[section].annotation.model_fields  # type: ignore[union-attr]
        if name not in fields:
            from difflib import get_close_matches

            near = get_close_matches(name, list(fields), n=1)
            hint = f"; did you mean {section}.{near[0]}?" if near else ""
            raise GridError(f"grid file {p}: {key}: unknown key{hint}")
        if not isinstance(v, list):
            raise GridError(f"grid file {p}: {key}: give a list of values to try, e.g. [{v!r}] (got {v!r})")
        if not v:
            raise GridError(f"grid file {p}: {key}: an empty list gives no configuration")
        if key in keys:  # "strategy.x" and x under [strategy] are the same key
            raise GridError(f"grid file {p}: {key}: given twice")
        keys.append(key)
        values.append(tuple(v))
    if not keys:
        raise GridError(f"grid file {p}: no keys (write e.g. \"strategy.risk_aversion\" = [0.01, 0.02])")
    return Grid(str(p), tuple(keys), tuple(values))


def apply_overrides(base: Config, point: dict[str, Any]) -> Config:
    """The base configuration with `point`'s keys set, validated by the config.toml models (ValidationError)."""
    data = base.model_dump()
    for key, value in point.items():
        section, name = key.split(".")
        data[section][name] = value
    return Config.model_validate(data)


def configurations(base: Config, grid: Grid) -> list[Config]:
    """Every point of the grid as a validated Config; the first bad one is a GridError naming key and value."""
    out = []
    for point in grid.points():
        try:
            out.append(apply_overrides(base, point))
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(x) for x in err["loc"])
            value = point.get(key, err.get("input"))
            raise GridError(f"grid file {grid.path}: {key} = {value!r}: {err['msg']}") from None
    return out


# ------------------------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class Objective:
    name: str = "total_pnl"
    max_inventory_pct: float = 2.0
    min_fills: int = 1

    def describe(self) -> str:
        return (f"maximise {self.name} ({OBJECTIVES[self.name]}), among configurations whose engine did not fault, "
                f"with max |inventory| <= {self.max_inventory_pct} % of capital and >= {self.min_fills} fills "
                "on every data set; ties: smaller max |inventory|, then grid order")


def summarise(sections: list[dict[str, Any] | None], errors: list[str | None], objective: Objective) -> dict[str, Any]:
    """One configuration's figures on one part over all data sets, and whether it may be chosen."""
    failed = [e for e in errors if e]
    if failed:
        return {"eligible": False, "why_not": f"failed: {failed[0]}", "total_pnl": None, "worst_pnl": None,
                "max_abs_inventory_pct": None, "fills": None, "score": None}
    secs = [s for s in sections if s is not None]
    pnl = [s["pnl_usdc"] for s in secs]
    inv = max(s["inventory"]["max_abs_inventory_pct"] for s in secs)
    fills = [s["fills"] for s in secs]
    why = []
    if inv > objective.max_inventory_pct:
        why.append(f"max |inventory| {inv:.3f} % > {objective.max_inventory_pct} %")
    if min(fills) < objective.min_fills:
        why.append(f"{min(fills)} fills on a data set < {objective.min_fills}")
    total, worst = round(sum(pnl), 6), round(min(pnl), 6)
    return {"eligible": not why, "why_not": "; ".join(why) or None, "total_pnl": total, "worst_pnl": worst,
            "max_abs_inventory_pct": inv, "fills": sum(fills),
            "score": total if objective.name == "total_pnl" else worst}


def choose(summaries: list[dict[str, Any]]) -> int | None:
    """Index of the chosen configuration (by the objective's score; ties as documented), None if none is eligible."""
    eligible = [i for i, s in enumerate(summaries) if s["eligible"]]
    if not eligible:
        return None
    return min(eligible, key=lambda i: (-summaries[i]["score"], summaries[i]["max_abs_inventory_pct"], i))


def _part(section: dict[str, Any]) -> dict[str, Any]:
    """What the sweep keeps of a backtest section, per data set and part."""
    keep = ("pnl_usdc", "pnl_settle", "pnl_breakdown", "fills", "orders_placed", "orders_per_fill", "max_drawdown_usdc",
            "taker_share_pct", "effective_spread_bps", "realised_spread_bps", "adverse_selection_bps", "markout_bps",
            "time_at_touch_pct", "spread_improvement_pct", "market_spread_bps", "our_spread_bps", "quoting_time_s",
            "model", "wall_s")
    out = {k: section[k] for k in keep}
    out["max_abs_inventory_pct"] = section["inventory"]["max_abs_inventory_pct"]
    out["traded_from_fraction"] = section["traded_from_fraction"]
    out["traded_until_fraction"] = section["traded_until_fraction"]
    return out


def _env_keys() -> dict[str, str]:
    """config keys set from FLASHMM_* variables: they stay in the environment, not in a written file."""
    return {f"{section}.{key}": f"from the environment, {ENV_PREFIX}{section.upper()}__{key.upper()}"
            for section, keys in _env_overrides(dict(os.environ)).items() for key in keys}


def secret_keys(cfg: Config) -> dict[str, str]:
    """Fields that hold secrets (repr=False in the models): never written to a file."""
    return {f"{section}.{name}": "a secret: set it in the environment"
            for section, model in cfg for name, f in type(model).model_fields.items() if f.repr is False}


def write_chosen(cfg: Config, path: str | Path, header: str) -> None:
    omit = {**_env_keys(), **secret_keys(cfg)}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(render_toml(cfg, header, omit), encoding="utf-8")


# ------------------------------------------------------------------------------------------- the sweep
def run_sweep(base: Config, data: list[EventSet], grid: Grid, split: float = 0.7, *, workers: int | None = None,
              backend: str = "auto", address: str | None = None, objective: Objective = Objective(),
              score_all: bool = False, show_progress: bool = True, json_path: str | Path | None = None,
              out_config: str | Path | None = None, console: Any = None, command: str = "") -> dict[str, Any]:
    """The walk-forward sweep; returns (and writes) the JSON result. Raises GridError for a bad grid."""
    from flashmm.research.parallel import Job, ParallelRunner, RichBars, rich_progress
    from flashmm.telemetry.logging import configure_logging

    if not 0.0 < split < 1.0:
        raise ValueError("split must be in (0, 1)")
    configure_logging("error")
    configs = configurations(base, grid)
    points = grid.points()
    names = [d.meta.get("name") or data_set_name(d.files) for d in data]
    n_cfg, n_data = len(configs), len(data)
    base_index = n_cfg  # the base configuration is scored beside the grid, never chosen from it

    def rows_until(d: EventSet, frac: float) -> int:
        if frac >= 1.0 or not len(d.events):
            return len(d.events)
        ts = d.events["ts_ns"]
        return int(ts.searchsorted(ts[0] + int(frac * d.duration_s * 1e9), side="right"))

    def label(c: int, d: int, part: str) -> str:
        who = DEFAULT_LABEL if c == base_index else f"#{c + 1}"
        return f"{who} {names[d]} {part}"

    all_cfgs = configs + [base]
    # a configuration equal to another (e.g. the base is a point of the grid) is replayed once
    seen: dict[str, int] = {}
    rep = [seen.setdefault(c.model_dump_json(), i) for i, c in enumerate(all_cfgs)]

    def run_part(runner: ParallelRunner, cfgs: list[int], part: str, frm: float, until: float,
                 title: str) -> dict[int, list[Any]]:
        uniq = sorted({rep[c] for c in cfgs})
        jobs = [Job(all_cfgs[c], d, frm, until, label(c, d, part)) for c in uniq for d in range(n_data)]
        bars = RichBars(progress, len(jobs), lambda j: rows_until(data[j.data], j.trade_until_fraction), jobs,
                        keep_finished=False, title=title)
        results = runner.run(jobs, bars)
        progress.update(bars.overall, visible=False)
        tasks.append(len(jobs))
        by_rep = {c: results[k * n_data:(k + 1) * n_data] for k, c in enumerate(uniq)}
        return {c: by_rep[rep[c]] for c in cfgs}

    t0 = time.perf_counter()
    tasks: list[int] = []
    progress = rich_progress(disable=not show_progress)
    # a configuration whose engine never quoted on a part is a failed candidate, not the end of the sweep
    fatal = ("DataError", "ModelLoadError", "ModelError")
    with progress, ParallelRunner(data, workers, backend, address, fatal=fatal) as runner:
        # phase 1: every configuration (and the base) on the earlier part of every data set
        by_cfg = run_part(runner, list(range(n_cfg + 1)), "earlier", 0.0, split,
                          f"earlier part: {n_cfg} configurations + base x {n_data} data sets")
        summaries = [summarise([r.section for r in by_cfg[c]], [r.error for r in by_cfg[c]], objective)
                     for c in range(n_cfg + 1)]
        chosen = choose(summaries[:n_cfg])
        # phase 2: the later part, for the chosen configuration and the base (or every one with score_all)
        later_cfgs = list(range(n_cfg + 1)) if score_all else ([chosen] if chosen is not None else []) + [base_index]
        later_by_cfg = run_part(runner, later_cfgs, "later", split, 1.0,
                                f"later part: {len(later_cfgs)} configurations x {n_data} data sets")
        parallel = {"backend": runner.used_backend, "workers": runner.resolved_workers(),
                    "startup_s": round(runner.startup_s, 3), "address": address}
    wall = time.perf_counter() - t0

    def per_data(results: list[Any]) -> list[dict[str, Any]]:
        return [{"data": names[d], **(_part(r.section) if r.ok else {"error": r.error})}
                for d, r in enumerate(results)]

    def later_summary(c: int) -> dict[str, Any] | None:
        rs = later_by_cfg.get(c)
        if rs is None:
            return None
        return summarise([r.section for r in rs], [r.error for r in rs], objective)

    entries = []
    for c in range(n_cfg + 1):
        entries.append({
            "index": c + 1 if c < n_cfg else None,
            "label": f"#{c + 1}" if c < n_cfg else DEFAULT_LABEL,
            "overrides": points[c] if c < n_cfg else {},
            "same_as": (f"#{rep[c] + 1}" if rep[c] != c else None),  # replayed once, figures shared
            "earlier": {"summary": summaries[c], "data_sets": per_data(by_cfg[c])},
            "later": ({"summary": later_summary(c), "data_sets": per_data(later_by_cfg[c])}
                      if c in later_by_cfg else None),
        })
    result: dict[str, Any] = {
        "command": command,
        "grid": {"path": grid.path, "keys": list(grid.keys), "values": [list(v) for v in grid.values],
                 "configurations": n_cfg},
        "data_sets": [{"name": names[d], "source": x.source, "files": x.files, "symbol": x.instrument.symbol,
                       "quote": x.instrument.quote,
                       "duration_s": round(x.duration_s, 3), "rows": len(x.events),
                       "earlier_rows": rows_until(x, split)} for d, x in enumerate(data)],
        "split": split,
        "parts": {"earlier": f"trading on [0, {split}) of each recording by time: the configuration is chosen here",
                  "later": f"trading on [{split}, 1), book and features warmed up on [0, {split}): scored here"},
        "objective": {"name": objective.name, "max_inventory_pct": objective.max_inventory_pct,
                      "min_fills": objective.min_fills, "description": objective.describe()},
        "chosen": None,
        "base": {"label": DEFAULT_LABEL, "description": "the configuration the grid was applied to (--config, else "
                 "the built-in defaults), scored beside the grid, never chosen from it"},
        "configurations": entries,
        "parallel": {**parallel, "tasks": sum(tasks)},
        "wall_s": round(wall, 3),
        "generated_unix": time.time(),
        "config_written": None,
    }
    if chosen is not None:
        later_chosen = entries[chosen]["later"]
        later_base = entries[base_index]["later"]
        result["chosen"] = {
            "index": chosen + 1, "overrides": points[chosen],
            "earlier_score": summaries[chosen]["score"],
            "later": [{"data": names[d], "chosen_pnl_usdc": later_chosen["data_sets"][d].get("pnl_usdc"),
                       "base_pnl_usdc": later_base["data_sets"][d].get("pnl_usdc"),
                       "chosen_fills": later_chosen["data_sets"][d].get("fills"),
                       "base_fills": later_base["data_sets"][d].get("fills"),
                       "chosen_max_abs_inventory_pct": later_chosen["data_sets"][d].get("max_abs_inventory_pct"),
                       "base_max_abs_inventory_pct": later_base["data_sets"][d].get("max_abs_inventory_pct")}
                      for d in range(n_data)],
            "later_total_pnl": {"chosen": later_chosen["summary"]["total_pnl"],
                                "base": later_base["summary"]["total_pnl"]},
        }
        if out_config:
            over = ", ".join(f"{k} = {v!r}" for k, v in points[chosen].items())
            why = textwrap.fill(f"on the earlier {split:.0%} of {', '.join(names)}; objective: {objective.describe()}.",
                                width=110, initial_indent="# ", subsequent_indent="# ")
            header = (f"# Chosen by flashmm sweep (configuration #{chosen + 1} of {n_cfg}: {over})\n{why}\n"
                      f"# Later-part PnL: {result['chosen']['later_total_pnl']['chosen']} (base "
                      f"{result['chosen']['later_total_pnl']['base']}); the sweep's JSON has every figure.\n"
                      + (f"# Command: {command}\n" if command else ""))
            write_chosen(all_cfgs[chosen], out_config, header)
            result["config_written"] = str(out_config)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    if console is not None:
        print_tables(result, console)
    return result


def data_set_name(paths: list[str]) -> str:
    """What tables call a data set: its folder, or its file without the extension, or the folder of its files."""
    p = Path(paths[0])
    if p.is_dir() or len(paths) > 1:
        return (p if p.is_dir() else p.parent).name or str(p)
    return p.name.split(".")[0] or str(p)


def _fmt(v: Any, spec: str = "+.4f") -> str:
    return "—" if v is None else format(v, spec)


def print_tables(result: dict[str, Any], console: Any) -> None:
    """The results table (every configuration on the earlier part, best first) and the chosen configuration
    against the base on the later part, per data set."""
    from rich.table import Table

    keys = result["grid"]["keys"]
    obj = result["objective"]
    t = Table(title=f"Earlier part (trading on [0, {result['split']})): {obj['description']}", title_justify="left")
    t.add_column("rank", justify="right")
    t.add_column("#", justify="right")
    for k in keys:
        t.add_column(k.split(".", 1)[1], justify="right")
    for d in result["data_sets"]:
        t.add_column(f"{d['name']} PnL", justify="right")
    t.add_column("total PnL", justify="right")
    t.add_column("worst", justify="right")
    t.add_column("max |inv| %", justify="right")
    t.add_column("fills", justify="right")
    t.add_column("later PnL", justify="right")
    t.add_column("note")
    entries = result["configurations"]
    def order(e: dict[str, Any]) -> tuple[bool, float, float]:
        s = e["earlier"]["summary"]
        return (not s["eligible"], -s["score"] if s["score"] is not None else math.inf,
                e["index"] if e["index"] is not None else math.inf)

    ranked = sorted(entries, key=order)
    chosen = result["chosen"]["index"] if result["chosen"] else None
    rank = 0
    for e in ranked:
        s = e["earlier"]["summary"]
        is_base = e["index"] is None
        if not is_base and s["eligible"]:
            rank += 1
        later = e["later"]["summary"]["total_pnl"] if e["later"] else None
        note = "CHOSEN" if e["index"] == chosen and chosen is not None else ("base, not a candidate" if is_base else "")
        if s["why_not"] and not is_base:
            note = f"not eligible: {s['why_not']}"
        if e.get("same_as"):
            note = f"{note}; same as {e['same_as']}" if note else f"same as {e['same_as']}"
        style = "bold green" if note == "CHOSEN" else ("dim" if is_base or not s["eligible"] else None)
        t.add_row(str(rank) if (not is_base and s["eligible"]) else "", e["label"],
                  *[repr(e["overrides"][k]) if k in e["overrides"] else "(base)" for k in keys],
                  *[_fmt(x.get("pnl_usdc")) for x in e["earlier"]["data_sets"]],
                  _fmt(s["total_pnl"]), _fmt(s["worst_pnl"]), _fmt(s["max_abs_inventory_pct"], ".3f"),
                  _fmt(s["fills"], "d"), _fmt(later), note, style=style)
    console.print(t)
    if not result["chosen"]:
        console.print("[bold red]no configuration is eligible[/]: nothing chosen, no configuration written")
        return
    c = result["chosen"]
    t2 = Table(title=f"Later part (trading on [{result['split']}, 1), not seen by the choice): chosen #{c['index']} "
                     f"vs base", title_justify="left")
    for col in ("data", "chosen PnL", "base PnL", "difference", "chosen fills", "base fills", "chosen max |inv| %",
                "base max |inv| %"):
        t2.add_column(col, justify="left" if col == "data" else "right")
    for row in c["later"]:
        diff = (row["chosen_pnl_usdc"] - row["base_pnl_usdc"]
                if row["chosen_pnl_usdc"] is not None and row["base_pnl_usdc"] is not None else None)
        t2.add_row(row["data"], _fmt(row["chosen_pnl_usdc"]), _fmt(row["base_pnl_usdc"]), _fmt(diff),
                   _fmt(row["chosen_fills"], "d"), _fmt(row["base_fills"], "d"),
                   _fmt(row["chosen_max_abs_inventory_pct"], ".3f"), _fmt(row["base_max_abs_inventory_pct"], ".3f"))
    tot = c["later_total_pnl"]
    t2.add_row("total", _fmt(tot["chosen"]), _fmt(tot["base"]),
               _fmt(tot["chosen"] - tot["base"] if tot["chosen"] is not None and tot["base"] is not None else None),
               "", "", "", "", style="bold")
    console.print(t2)


# ------------------------------------------------------------------------------------------- command line
def add_cli(sub: Any, add_data_options: Any) -> None:
    sw = sub.add_parser("sweep", help="choose parameters on the earlier part of recordings, score them on the later "
                                      "part; every backtest a Ray task (or a process)")
    sw.add_argument("--data", action="append", required=True, nargs="+",
                    help="a data set: a file, the files of one stream, or a folder; repeat --data for several")
    sw.add_argument("--grid", required=True, help="grid file (TOML): \"section.key\" = [values to try]")
    sw.add_argument("--split", type=float, default=0.7,
                    help="choose on [0, split) of each recording by time, score on [split, 1) (default 0.7)")
    sw.add_argument("--workers", type=int, default=None, help="tasks at once (default: every core, or the cluster's CPUs)")
    sw.add_argument("--address", help="join an existing Ray cluster (HOST:PORT) instead of starting a local Ray")
    sw.add_argument("--backend", choices=["auto", "ray", "process", "serial"], default="auto",
                    help="auto: Ray when installed, else a process pool")
    sw.add_argument("--objective", choices=sorted(OBJECTIVES), default="total_pnl")
    sw.add_argument("--max-inventory-pct", type=float, default=2.0,
                    help="a configuration whose max |inventory| exceeds this %% of capital on a data set is not chosen")
    sw.add_argument("--min-fills", type=int, default=1, help="fewest fills on every data set for a configuration to be chosen")
    sw.add_argument("--score-all", action="store_true",
                    help="score every configuration on the later part too (twice the work; shows how ranks hold up)")
    sw.add_argument("--json", help="write every figure to PATH")
    sw.add_argument("--out-config", help="write the chosen configuration to PATH (a complete config.toml)")
    sw.add_argument("--config", help="base configuration (config.toml path; default: built-in defaults)")
    sw.add_argument("--model", help="model file, or none (default [model].path: the shipped model)")
    add_data_options(sw)  # --symbol, --instruments, --cache-dir: how recordings are read, as everywhere
    sw.add_argument("--no-progress", action="store_true", help="no progress bars")
    sw.add_argument("--seed", type=int, default=7)


def run_cli(args: Any, cfg: Config) -> int:
    from rich.console import Console

    from flashmm.data.loader import load_configured

    err = Console(stderr=True)
    if not 0.0 < args.split < 1.0:
        print("flashmm: --split must be in (0, 1)", file=sys.stderr)
        return 2
    from flashmm.research.parallel import backend_problem

    problem = backend_problem(args.backend, args.address, args.workers)
    if problem:
        print(f"flashmm: {problem}", file=sys.stderr)
        return 2
    if args.model:
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": args.model})})
    try:
        grid = load_grid(args.grid)
        configurations(cfg, grid)  # every point checked before any data is read or any worker started
    except GridError as exc:
        print(f"flashmm: {exc}", file=sys.stderr)
        return 2
    data = []
    for paths in args.data:
        d = load_configured(cfg, paths)
        d.meta["name"] = data_set_name(paths)
        data.append(d)
    err.print(f"sweep: {grid.size} configurations x {len(data)} data sets, split {args.split}: "
              f"{(grid.size + 1) * len(data)} backtests on the earlier part, then the chosen and the base on the later part")
    result = run_sweep(cfg, data, grid, args.split, workers=args.workers, backend=args.backend, address=args.address,
                       objective=Objective(args.objective, args.max_inventory_pct, args.min_fills),
                       score_all=args.score_all, show_progress=not args.no_progress, json_path=args.json,
                       out_config=args.out_config, console=Console() if sys.stdout.isatty() else Console(width=200),
                       command=" ".join(["flashmm"] + sys.argv[1:]))
    p = result["parallel"]
    err.print(f"{p['tasks']} backtests in {result['wall_s']:.1f} s on {p['workers']} workers ({p['backend']}"
              f"{', startup ' + format(p['startup_s'], '.1f') + ' s' if p['startup_s'] else ''})"
              + (f"; JSON -> {args.json}" if args.json else "")
              + (f"; chosen configuration -> {result['config_written']}" if result["config_written"] else ""))
    return 0 if result["chosen"] else 1
