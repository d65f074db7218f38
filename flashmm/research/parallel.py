"""Backtests on every core: one engine per task, as Ray tasks, or in a process pool where Ray is not installed.

One mechanism for `flashmm backtest` with several data sets, `flashmm sweep` and `flashmm bench parallel`.
A `Job` is one replay of one data set with one configuration (optionally only a slice of the recording,
see `run_one`); `ParallelRunner.run` runs a list of them and returns one `JobResult` per job, in the order
given, whichever worker finished first. Every task is the same `run_one` call the serial backtest makes, on
the same events and configuration, so the results equal a serial run's (`trading_figures` drops the
wall-clock measures, which differ from run to run; tests/test_sweep.py shows the equality).

Backends:
- `ray`: a local Ray started in-process (`address="local"`: never someone else's cluster on this machine)
  with one CPU per worker, or an existing cluster (`address="HOST:PORT"`: the way past one machine; every
  node needs this package installed). The data sets are put in Ray's object store once, so remote nodes
  need no copy of the recordings; workers report rows done through a Ray queue for the progress bars.
- `process`: a `spawn` process pool of `workers` processes (torch and threads make `fork` unsafe); each
  worker receives the data sets once, at start.
- `serial`: in this process, one job after another (also what one job or one worker means).
`auto` is Ray when it is installed, else the process pool. One task per core: workers start no thread pools
(and the predictor runs torch on one thread everywhere, so a model's arithmetic is the same in any backend).
"""

from __future__ import annotations

import os
import queue as queue_mod
import socket
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flashmm.config import Config
from flashmm.data.events import EventSet
from flashmm.data.readers import DataError
from flashmm.model.predictor import ModelLoadError

BACKENDS = ("auto", "ray", "process", "serial")
# per-run measures of this machine's speed, not of the trading: they differ between any two runs
TIMING_KEYS = ("wall_s", "rows_per_s", "messages_per_s", "replay_speed_vs_real_time", "tick_to_quote_us")
# errors that no other job could avoid either (bad input): the run stops with them instead of going on
FATAL = ("DataError", "NoDataProcessedError", "ModelLoadError", "ModelError")


def _error_class(name: str) -> type[Exception]:
    if name == "NoDataProcessedError":
        from flashmm.research.backtest import NoDataProcessedError

        return NoDataProcessedError
    if name == "ModelError":
        from flashmm.model.artifact import ModelError

        return ModelError
    return {"DataError": DataError, "ModelLoadError": ModelLoadError}[name]


def available_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ray_installed() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def backend_problem(backend: str, address: str | None, workers: int | None) -> str | None:
    """Why these command-line choices cannot run (one line), or None."""
    if workers is not None and workers < 1:
        return "--workers must be >= 1"
    if address and backend not in ("auto", "ray"):
        return f"--address joins a Ray cluster: it needs --backend ray (not {backend})"
    if (backend == "ray" or address) and not ray_installed():
        return "Ray is not installed (pip install 'flashmm[ray]'); --backend process needs no Ray"
    return None


@dataclass(frozen=True)
class Job:
    """One replay: `cfg` on data set number `data`, trading on [trade_from_fraction, trade_until_fraction)
    of the recording (book and features follow the market from its start)."""

    cfg: Config
    data: int
    trade_from_fraction: float = 0.0
    trade_until_fraction: float = 1.0
    label: str = ""  # what the progress bar calls it
    keep_series: bool = False  # return the per-second PnL, inventory and spreads (for --plot)


@dataclass
class JobResult:
    index: int  # position of the job in the list given to run()
    section: dict[str, Any] | None  # the backtest report section (None when the job failed)
    error: str | None = None  # "ExceptionType: message" when the engine or the job failed
    error_type: str | None = None
    series: dict[str, list[Any]] | None = None
    worker: str = ""  # host:pid that ran it
    wall_s: float = 0.0  # the task's own time, loading the model included

    @property
    def ok(self) -> bool:
        return self.error is None


def trading_figures(section: dict[str, Any]) -> dict[str, Any]:
    """A report section without the wall-clock measures and without whether the recording came from the
    parse cache: what must be equal between any two runs of the same job (serial or parallel, any backend)."""
    out = {k: v for k, v in section.items() if k not in TIMING_KEYS}
    if isinstance(out.get("data"), dict):
        out["data"] = {k: v for k, v in out["data"].items() if k != "cache"}
    return out


class _Reporter:
    """What run_one takes as `progress` (add_task/update), forwarding rows done to the driver at most
    every `every_s` seconds."""

    def __init__(self, index: int, post: Callable[[tuple[Any, ...]], None], every_s: float = 0.25) -> None:
        self.index = index
        self.post = post
        self.every_s = every_s
        self._last = 0.0

    def add_task(self, description: str, total: int | None = None, **_: Any) -> int:
        self.post(("start", self.index, total or 0))
        return self.index

    def update(self, task: int, completed: int = 0, **_: Any) -> None:
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.post(("rows", self.index, completed))


def _single_threaded() -> None:
    """In a worker, before torch is imported: one task per core, so no library starts a thread per core in
    every worker (the predictor itself runs torch on one thread everywhere, serial runs included)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


def execute(index: int, job: Job, data: EventSet, post: Callable[[tuple[Any, ...]], None] | None,
            log_level: str = "error", log_file: str = "") -> JobResult:
    """Run one job here (in a worker, or in the driver for the serial backend)."""
    from flashmm.research.backtest import run_one
    from flashmm.telemetry.logging import configure_logging

    configure_logging(log_level, log_file or None)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    t0 = time.perf_counter()
    reporter = _Reporter(index, post) if post is not None else None
    try:
        section, engine = run_one(job.cfg, data, reporter, job.trade_from_fraction, job.trade_until_fraction)
    except Exception as exc:  # a faulted engine or bad input: reported per job, decided by the caller
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return JobResult(index, None, tb, type(exc).__name__, worker=worker, wall_s=time.perf_counter() - t0)
    finally:
        if post is not None:
            post(("end", index, 0))
    series = None
    if job.keep_series:
        series = {"pnl_history": list(engine.pnl_history), "inventory_history": list(engine.inventory_history),
                  "spread_history": [list(x) for x in engine.spread_history]}
    return JobResult(index, section, series=series, worker=worker, wall_s=round(time.perf_counter() - t0, 3))


# ---------------------------------------------------------------- process-pool worker side ----------
_WORKER: dict[str, Any] = {}


def _pool_init(data_sets: list[EventSet], q: Any, log_level: str, log_file: str) -> None:
    import signal

    # Ctrl-C in a terminal reaches the whole process group: the driver decides (it stops the workers)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _single_threaded()
    _WORKER.update(data=data_sets, queue=q, log_level=log_level, log_file=log_file)


def _pool_run(index: int, job: Job) -> JobResult:
    q = _WORKER["queue"]
    return execute(index, job, _WORKER["data"][job.data], q.put, _WORKER["log_level"], _WORKER["log_file"])


def _pool_ping(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


# ---------------------------------------------------------------- Ray worker side -------------------
def _ray_run(index: int, job: Job, data: EventSet, q: Any, log_level: str, log_file: str) -> JobResult:
    _single_threaded()
    return execute(index, job, data, q.put_nowait if q is not None else None, log_level, log_file)


class ProgressView:
    """What the runner tells about jobs as they go; the base class shows nothing."""

    def started(self, index: int, job: Job, rows_total: int) -> None: ...

    def rows(self, index: int, rows_done: int) -> None: ...

    def finished(self, index: int, result: JobResult) -> None: ...


@dataclass
class ParallelRunner:
    """Runs jobs on `workers` cores (None: all of this machine's, or of the Ray cluster at `address`).
    Use as a context manager: the pool or the Ray it started is shut down on exit (a Ray that was already
    running in this process, e.g. a test's, is left running)."""

    data_sets: list[EventSet]
    workers: int | None = None
    backend: str = "auto"
    address: str | None = None
    log_level: str = "error"
    log_file: str = ""
    fatal: tuple[str, ...] = FATAL  # a job failing with one of these raises it here (the others are results)
    startup_s: float = 0.0  # time to start Ray or the pool (measured at the first parallel run)
    used_backend: str = ""  # what the last run() used: serial for one job or one worker
    _pool: Any = field(default=None, repr=False)
    _queue: Any = field(default=None, repr=False)
    _ray_refs: list[Any] = field(default_factory=list, repr=False)
    _ray_started: bool = field(default=False, repr=False)
    _ray_task: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.workers is not None and self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.backend == "auto":
            self.backend = "ray" if (self.address or ray_installed()) else "process"
        if self.address and self.backend != "ray":
            raise ValueError("--address joins a Ray cluster: it needs the ray backend")
        if self.backend == "ray" and not ray_installed():
            raise RuntimeError("Ray is not installed: pip install 'flashmm[ray]', or use the process pool")

    def __enter__(self) -> "ParallelRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------------
    def resolved_workers(self) -> int:
        if self.workers is not None:
            return self.workers
        if self.backend == "ray" and self.address:
            import ray

            self._start_ray()
            return max(1, int(ray.cluster_resources().get("CPU", 1)))
        return available_cores()

    def start(self) -> None:
        """Start Ray, or the pool's processes with the data sets, now rather than at the first run (so a
        benchmark can time it apart)."""
        t0 = time.perf_counter()
        if self.backend == "ray":
            import ray

            self._start_ray()
            ping = ray.remote(num_cpus=1)(_pool_ping)
            ray.get([ping.remote(0.2) for _ in range(self.resolved_workers())])  # workers up, this module imported
        elif self.backend == "process":
            n = self.resolved_workers()
            pool = self._ensure_pool()
            for f in [pool.submit(_pool_ping, 0.2) for _ in range(n)]:  # each worker busy a moment: all start
                f.result()
        self.startup_s = time.perf_counter() - t0

    def run(self, jobs: Sequence[Job], view: ProgressView | None = None) -> list[JobResult]:
        """Every job, results in the order of `jobs`. An error named in `fatal` (bad input: every job would
        fail) is raised here; any other failure is the job's result (`error`)."""
        view = view or ProgressView()
        for j in jobs:
            if not 0 <= j.data < len(self.data_sets):
                raise ValueError(f"job names data set {j.data}; there are {len(self.data_sets)}")
        if not jobs:
            return []
        serial = self.backend == "serial" or (self.resolved_workers() == 1 and not self.address) or len(jobs) == 1
        self.used_backend = "serial" if serial else self.backend
        if serial:
            return self._run_serial(jobs, view)
        if self.backend == "ray":
            return self._run_ray(jobs, view)
        return self._run_pool(jobs, view)

    # ------------------------------------------------------------------------------------------------
    def _post_to(self, view: ProgressView, jobs: Sequence[Job]) -> Callable[[tuple[Any, ...]], None]:
        def post(msg: tuple[Any, ...]) -> None:
            kind, index, value = msg
            if kind == "start":
                view.started(index, jobs[index], value)
            elif kind == "rows":
                view.rows(index, value)

        return post

    def _finish(self, result: JobResult, view: ProgressView) -> JobResult:
        view.finished(result.index, result)
        if result.error_type in self.fatal:
            raise _error_class(result.error_type)(result.error.split(": ", 1)[-1] if result.error else "")
        return result

    def _run_serial(self, jobs: Sequence[Job], view: ProgressView) -> list[JobResult]:
        post = self._post_to(view, jobs)
        out = []
        for i, job in enumerate(jobs):
            out.append(self._finish(execute(i, job, self.data_sets[job.data], post, self.log_level, self.log_file),
                                    view))
        return out

    def _drain(self, view: ProgressView, jobs: Sequence[Job], items: list[tuple[Any, ...]]) -> None:
        post = self._post_to(view, jobs)
        for msg in items:
            post(msg)

    # ---------------------------------------------------------------- process pool ----------------
    def _run_pool(self, jobs: Sequence[Job], view: ProgressView) -> list[JobResult]:
        import concurrent.futures as cf

        pool = self._ensure_pool()
        futures = {pool.submit(_pool_run, i, job): i for i, job in self._longest_first(jobs)}
        results: dict[int, JobResult] = {}
        pending = set(futures)
        try:
            while pending:
                done, pending = cf.wait(pending, timeout=0.1, return_when=cf.FIRST_COMPLETED)
                self._drain(view, jobs, self._take_queue())
                for f in done:
                    r = f.result()
                    results[r.index] = self._finish(r, view)
            self._drain(view, jobs, self._take_queue())
        except BaseException:  # interrupted, or a fatal error: stop the workers now, not after their jobs
            self._terminate_pool()
            raise
        return [results[i] for i in range(len(jobs))]

    def _terminate_pool(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # ProcessPoolExecutor has no terminate() before Python 3.14: its worker processes are in _processes
        for proc in list((getattr(pool, "_processes", None) or {}).values()):
            proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)

    def _longest_first(self, jobs: Sequence[Job]) -> list[tuple[int, Job]]:
        """Jobs in the order to start them: the longest first (rows replayed), so that no long job starts
        last while the other workers idle; results still come back in the order given."""
        return sorted(enumerate(jobs), key=lambda ij: (-len(self.data_sets[ij[1].data].events)
                                                        * ij[1].trade_until_fraction, ij[0]))

    def _ensure_pool(self) -> Any:
        import concurrent.futures as cf
        import multiprocessing as mp

        if self._pool is None:
            ctx = mp.get_context("spawn")
            self._queue = ctx.Queue()
            self._pool = cf.ProcessPoolExecutor(max_workers=self.resolved_workers(), mp_context=ctx,
                                                initializer=_pool_init,
                                                initargs=(self.data_sets, self._queue, self.log_level, self.log_file))
        return self._pool

    def _take_queue(self) -> list[tuple[Any, ...]]:
        items = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue_mod.Empty:
                return items

    # ---------------------------------------------------------------- Ray --------------------------
    def _start_ray(self) -> None:
        import logging

        import ray

        if self._ray_task is not None:
            return
        t0 = time.perf_counter()
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, logging_level=logging.ERROR, log_to_driver=False)
            else:
                data_bytes = sum(d.events.nbytes for d in self.data_sets)
                ray.init(address="local", num_cpus=self.workers or available_cores(), include_dashboard=False,
                         logging_level=logging.ERROR, log_to_driver=False,
                         object_store_memory=max(256 << 20, 3 * data_bytes))
            self._ray_started = True
        self._ray_task = ray.remote(num_cpus=1, max_retries=0)(_ray_run)
        self.startup_s = time.perf_counter() - t0
        self._ray_refs = [ray.put(d) for d in self.data_sets]

    def _run_ray(self, jobs: Sequence[Job], view: ProgressView) -> list[JobResult]:
        import ray
        from ray.util.queue import Queue

        self._start_ray()
        if self._queue is None:
            self._queue = Queue(actor_options={"num_cpus": 0})
        cap = self.resolved_workers()  # tasks in flight: all cores of a local Ray, or --workers on a cluster
        todo = self._longest_first(jobs)[::-1]
        inflight: dict[Any, int] = {}
        results: dict[int, JobResult] = {}
        try:
            while todo or inflight:
                while todo and len(inflight) < cap:
                    i, job = todo.pop()
                    ref = self._ray_task.remote(i, job, self._ray_refs[job.data], self._queue, self.log_level,
                                                self.log_file)
                    inflight[ref] = i
                done, _ = ray.wait(list(inflight), num_returns=1, timeout=0.1)
                self._drain(view, jobs, self._take_ray_queue())
                for ref in done:
                    i = inflight.pop(ref)
                    try:
                        r = ray.get(ref)
                    except Exception as exc:  # the task itself died (worker killed, node lost)
                        r = JobResult(i, None, f"{type(exc).__name__}: {exc}", type(exc).__name__)
                    results[i] = self._finish(r, view)
            self._drain(view, jobs, self._take_ray_queue())
        except BaseException:
            for ref in inflight:
                ray.cancel(ref)
            raise
        return [results[i] for i in range(len(jobs))]

    def _take_ray_queue(self) -> list[tuple[Any, ...]]:
        n = self._queue.qsize()
        return self._queue.get_nowait_batch(n) if n else []

    # ------------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.backend == "ray" and self._ray_task is not None:
            import ray

            if self._queue is not None:
                try:
                    self._queue.shutdown()
                except Exception:  # the cluster may be gone already
                    pass
            self._queue = None
            self._ray_refs = []
            if self._ray_started:
                ray.shutdown()
            self._ray_started = False
            self._ray_task = None


class RichBars(ProgressView):
    """Rich progress: one overall bar (rows of all jobs, so long and short jobs weigh what they cost) and a
    bar per running job; finished job bars stay (`keep_finished`, the backtest) or go (the sweep)."""

    def __init__(self, progress: Any, jobs_total: int, rows_of: Callable[[Job], int], jobs: Sequence[Job],
                 keep_finished: bool = True, title: str = "all") -> None:
        self.progress = progress
        self.keep_finished = keep_finished
        self.rows_of = rows_of
        self.rows_total = sum(rows_of(j) for j in jobs)
        self._rows: dict[int, int] = {}
        self._bars: dict[int, Any] = {}
        self._finished: set[int] = set()
        self.failed = 0
        self.done = 0
        self.jobs_total = jobs_total
        self.overall = progress.add_task(title, total=max(self.rows_total, 1), jobs=f"0/{jobs_total}")

    def started(self, index: int, job: Job, rows_total: int) -> None:
        if index in self._finished:  # a worker's message can arrive after its result
            return
        # a job that stops early (trade_until_fraction) replays only part of the recording's rows
        total = min(rows_total, self.rows_of(job)) if rows_total else self.rows_of(job)
        self._bars[index] = self.progress.add_task(job.label or f"job {index}", total=max(total, 1), jobs="")

    def rows(self, index: int, rows_done: int) -> None:
        if index in self._finished:
            return
        self._rows[index] = rows_done
        if index in self._bars:
            self.progress.update(self._bars[index], completed=rows_done)
        self.progress.update(self.overall, completed=sum(self._rows.values()))

    def finished(self, index: int, result: JobResult) -> None:
        self._finished.add(index)
        self.done += 1
        if not result.ok:
            self.failed += 1
        if result.section is not None:
            self._rows[index] = result.section["events"]
        bar = self._bars.get(index)
        if bar is not None:
            if self.keep_finished:
                self.progress.update(bar, completed=self._rows.get(index, 0))
            else:
                self.progress.remove_task(bar)
        failed = f", {self.failed} failed" if self.failed else ""
        self.progress.update(self.overall, completed=sum(self._rows.values()), jobs=f"{self.done}/{self.jobs_total}{failed}")


def rich_progress(disable: bool = False) -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} rows"),
                    TextColumn("{task.fields[jobs]}"), TimeElapsedColumn(), TimeRemainingColumn(), disable=disable)
