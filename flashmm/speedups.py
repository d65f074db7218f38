"""The hot path compiled: the same Python source, built by Cython into extension modules beside it.

Nothing here is a second implementation. `MODULES` (the book, the clocks, the features, the engine and its strategy,
calibration, risk and order manager, the replay venue, the histograms) are compiled from their own `.py`
files unchanged, so live trading, paper trading and replays run the same code whether or not it is compiled,
and `tests/test_replay_pins.py` holds both to the same fills, orders and PnL to the last digit (the README's
throughput section has the measured speed-up).

- `python -m flashmm.compile build` compiles the modules whose compiled copy is missing or older than their
  source (needs Cython and a C compiler; `./scripts/run` and `./scripts/test` do it when they bootstrap, and
  carry on in pure Python, saying so, where it cannot be done). `status` lists what is in use.
- Types for the compiled build live in `.pxd` files beside the source (extension types, typed containers);
  the `.py` files carry none, and annotation typing is off, so the source's semantics are kept to the last digit.
- A compiled module is only used while it matches what it was built from: the build records, in
  `_compiled.json`, the SHA-256 of each module's source, its `.pxd` and the `.pxd` files it cimports, and
  `guard()` (run when `flashmm` is imported) loads the `.py` instead of any compiled module whose inputs changed
  since, or whose origin is unknown, and of every compiled module that cimports one loaded from source. An edit
  is never silently shadowed by a stale build; it only runs slower until the next build.
- `FLASHMM_PURE_PYTHON=1` loads every module from its source (the pinned-results test runs both ways); a
  comma-separated list of module names loads those from source (what compiling each one buys).
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "_compiled.json"
PURE_ENV = "FLASHMM_PURE_PYTHON"

# The modules on the per-message and per-quote path (measured with cProfile and py-spy: see the README's
# throughput section). Event classes (core/domain.py) stay interpreted: dataclasses, and their construction is generated
# code either way.
MODULES: tuple[str, ...] = (
    "flashmm.core.book",
    "flashmm.core.clock",
    "flashmm.core.features",
    "flashmm.core.engine",
    "flashmm.core.calibration",
    "flashmm.core.alpha",
    "flashmm.core.execution",
    "flashmm.core.strategy",
    "flashmm.core.risk",
    "flashmm.core.metrics",
    "flashmm.core.state",
    "flashmm.core.guards",
    "flashmm.venues.replay",
    "flashmm.venues.sim",
    "flashmm.telemetry.histogram",
)

# annotation_typing off: a `float` or `int` annotation in the source must not turn into a C type or an exact type
# check (Python semantics to the last digit); the types the compiled build may use are declared in `.pxd` files.
COMPILER_DIRECTIVES = {"language_level": 3, "binding": True, "annotation_typing": False}
# Where a .pxd types arithmetic as C doubles (the features' decayed sums), `a * b + c` is one C expression, and a C
# compiler may fuse it into one multiply-add with a single rounding (gcc does by default wherever the target has
# FMA: aarch64, or x86-64 built with -march=native): not the interpreter's two roundings, so not the same last
# digit (measured: built with -march=native, the spot recording's volatility feature differed from the
# interpreter's from the 14th significant digit on). Contraction off, and no -ffast-math from an inherited CFLAGS
# (these come after it on the compiler's command line), keep every operation the interpreter's IEEE operation.
EXTRA_COMPILE_ARGS: tuple[str, ...] = ("-fno-fast-math", "-ffp-contract=off")

_status: dict[str, object] = {}


def source_of(module: str, package_dir: Path = PACKAGE_DIR) -> Path:
    return package_dir.joinpath(*module.split(".")[1:]).with_suffix(".py")


def compiled_of(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The compiled copy beside the source, if any (this interpreter's extension suffix)."""
    src = source_of(module, package_dir)
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        p = src.with_name(src.stem + suffix)
        if p.exists():
            return p
    return None


_CIMPORT = re.compile(r"^\s*(?:from\s+(\w+(?:\.\w+)+)\s+cimport\b|cimport\s+(\w+(?:\.\w+)+))", re.MULTILINE)


def orphans(modules: tuple[str, ...] = MODULES, package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Compiled copies of modules that are not (or no longer) compiled here, beside their source: left by an older
    build or a trial. Python's import prefers an extension module to the `.py` beside it, so each would silently
    run instead of its source; they load from source, and a build removes them. module -> its source."""
    out: dict[str, Path] = {}
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for so in package_dir.rglob("*" + suffix):
            name = so.name[: -len(suffix)]
            mod = ".".join((package_dir.name, *so.parent.relative_to(package_dir).parts, name))
            src = so.with_name(name + ".py")
            if mod not in modules and src.exists():
                out[mod] = src
    return out


def cimports(module: str, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """The modules whose compiled types this module's `.pxd` uses (`from flashmm.core.book cimport L2Book`): its
    compiled copy only works beside their compiled copies."""
    pxd = source_of(module, package_dir).with_suffix(".pxd")
    if not pxd.exists():
        return []
    package = module.split(".")[0]  # (C's libraries, `cimport libc.math`, are not built here)
    return sorted({m for m in (a or b for a, b in _CIMPORT.findall(pxd.read_text())) if m.split(".")[0] == package})


def cimport_closure(module: str, package_dir: Path = PACKAGE_DIR) -> list[str]:
    """The modules whose `.pxd` this module's compiled copy was built with: what it cimports, what those cimport,
    and so on (alpha cimports features, whose types hold book's: a change to book.pxd changes the layout alpha's
    copy was compiled against, and importing it then warned "Levels size changed")."""
    seen: set[str] = set()
    todo = list(cimports(module, package_dir))
    while todo:
        dep = todo.pop()
        if dep not in seen and dep != module:
            seen.add(dep)
            todo.extend(cimports(dep, package_dir))
    return sorted(seen)


def module_digest(module: str, package_dir: Path = PACKAGE_DIR) -> str:
    """What a compiled copy was built from: the module's source and `.pxd`, the `.pxd` files it cimports (directly
    or through another's), and how (Cython's directives and the C compiler's flags that decide its arithmetic)."""
    h = hashlib.sha256(digest(source_of(module, package_dir)).encode())
    h.update(b"\0build\0" + json.dumps([COMPILER_DIRECTIVES, EXTRA_COMPILE_ARGS], sort_keys=True).encode())
    for dep in cimport_closure(module, package_dir):
        pxd = source_of(dep, package_dir).with_suffix(".pxd")
        h.update(b"\0" + dep.encode() + b"\0" + (pxd.read_bytes() if pxd.exists() else b""))
    return h.hexdigest()


def digest(path: Path) -> str:
    """SHA-256 of a module's source and of its `.pxd` (types for the compiled build only), where it has one."""
    h = hashlib.sha256(path.read_bytes())
    pxd = path.with_suffix(".pxd")
    if pxd.exists():
        h.update(b"\0pxd\0" + pxd.read_bytes())
    return h.hexdigest()


def read_manifest(path: Path = MANIFEST) -> dict[str, str]:
    """module -> SHA-256 of the source its compiled copy was built from ({} when unreadable)."""
    try:
        data = json.loads(path.read_text())
        return {str(k): str(v) for k, v in data.get("sources", {}).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def plan(modules: tuple[str, ...] = MODULES, package_dir: Path = PACKAGE_DIR, manifest: Path = MANIFEST,
         pure: bool | frozenset[str] = False) -> dict[str, object]:
    """Which modules may load their compiled copy (`compiled`), which must load their source although a
    compiled copy exists (`from_source`: all of them when `pure` is True, those named when it is a set, the
    `stale` ones, whose source differs from what was compiled or whose build is unrecorded, and the `held_back`
    ones, which cimport a module that is not loaded compiled, and the `orphans`: compiled copies of modules not
    in `modules`), and which have none (`not_built`)."""
    recorded = read_manifest(manifest)
    compiled: list[str] = []
    stale: list[str] = []
    from_source: dict[str, Path] = {}
    not_built: list[str] = []
    for mod in modules:
        if compiled_of(mod, package_dir) is None:
            not_built.append(mod)
            continue
        src = source_of(mod, package_dir)
        if pure is True or (pure and mod in pure):
            from_source[mod] = src
        elif recorded.get(mod) != module_digest(mod, package_dir):
            stale.append(mod)
            from_source[mod] = src
        else:
            compiled.append(mod)
    # a compiled module built against another one's compiled types cannot load beside its source
    held_back: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for mod in list(compiled):
            dep = next((d for d in cimports(mod, package_dir) if d not in compiled), None)
            if dep is not None:
                compiled.remove(mod)
                from_source[mod] = source_of(mod, package_dir)
                held_back[mod] = dep
                changed = True
    strays = orphans(modules, package_dir)
    from_source.update(strays)
    return {"compiled": compiled, "stale": stale, "from_source": from_source, "not_built": not_built,
            "held_back": held_back, "orphans": sorted(strays)}


class _FromSource(importlib.abc.MetaPathFinder):
    """Loads the listed modules from their `.py` even where a compiled copy sits beside it."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths

    def find_spec(self, fullname, path=None, target=None):  # the finder protocol
        p = self.paths.get(fullname)
        return importlib.util.spec_from_file_location(fullname, p) if p is not None else None


def pure_setting(value: str) -> bool | frozenset[str]:
    """FLASHMM_PURE_PYTHON: empty or 0 = use what is compiled; 1 = nothing compiled; a comma-separated list of
    module names (flashmm.core.risk or core.risk) = those from source (to measure what compiling each one buys)."""
    v = value.strip()
    if v in ("", "0"):
        return False
    if v == "1":
        return True
    names = {n.strip() for n in v.split(",") if n.strip()}
    chosen = frozenset(m for m in MODULES if m in names or m.removeprefix("flashmm.") in names)
    unknown = names - {x for m in chosen for x in (m, m.removeprefix("flashmm."))}
    if unknown:
        raise ValueError(f"{PURE_ENV}: not a compiled module: {', '.join(sorted(unknown))} (1, 0, or names from "
                         f"flashmm.speedups.MODULES)")
    return chosen


def guard() -> None:
    """Decide, before any of MODULES is imported, which of them come from their compiled copy."""
    if _status:
        return
    pure = pure_setting(os.environ.get(PURE_ENV, ""))
    p = plan(pure=pure)
    if p["from_source"]:
        sys.meta_path.insert(0, _FromSource(p["from_source"]))  # type: ignore[arg-type]
    _status.update({"compiled": p["compiled"], "stale": p["stale"], "held_back": p["held_back"],
                    "orphans": p["orphans"],
                    "pure_python_forced": sorted(pure) if isinstance(pure, frozenset) else pure,
                    "not_built": p["not_built"]})


def status() -> dict[str, object]:
    """Which of MODULES run compiled in this process (`compiled` lists those actually loaded from a build)."""
    guard()
    loaded = [m for m in _status["compiled"] if m in sys.modules  # type: ignore[union-attr]
              and not str(getattr(sys.modules[m], "__file__", "")).endswith(".py")]
    return {**_status, "loaded_compiled": loaded, "modules": len(MODULES)}


def summary_line() -> str:
    s = status()
    n = len(s["compiled"])  # type: ignore[arg-type]
    if s["pure_python_forced"] is True:
        return f"pure Python ({PURE_ENV}=1)"
    if n == len(MODULES) and not s["orphans"]:
        return f"compiled ({n} modules)"
    parts = [f"{n} of {len(MODULES)} modules compiled"]
    if s["pure_python_forced"]:
        parts.append(f"from source by {PURE_ENV}: {', '.join(s['pure_python_forced'])}")  # type: ignore[arg-type]
    if s["stale"]:
        parts.append(f"stale, run from source: {', '.join(s['stale'])}")  # type: ignore[arg-type]
    if s["held_back"]:
        parts.append("from source with what they cimport: " + ", ".join(s["held_back"]))  # type: ignore[arg-type]
    if s["orphans"]:
        strays = ", ".join(s["orphans"])  # type: ignore[arg-type]
        parts.append(f"old compiled copies ignored (a build removes them): {strays}")
    if s["not_built"] or s["orphans"]:
        parts.append("build: python -m flashmm.compile build")
    return "; ".join(parts)


def needs_build() -> list[str]:
    recorded = read_manifest()
    return [m for m in MODULES if compiled_of(m) is None or recorded.get(m) != module_digest(m)]


def build(modules: list[str] | None = None, jobs: int | None = None) -> list[str]:
    """Compile `modules` (default: those missing or stale) in place; returns what was built. Raises
    ImportError without Cython, and the compiler's error when compiling fails (nothing is recorded then)."""
    import tempfile

    for src in orphans(MODULES, PACKAGE_DIR).values():  # compiled copies of modules no longer compiled: never run
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            src.with_name(src.stem + suffix).unlink(missing_ok=True)

    from Cython import __version__ as cython_version
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    todo = needs_build() if modules is None else list(modules)
    if not todo:
        return []
    jobs = jobs or os.cpu_count() or 1
    digests = {m: module_digest(m) for m in todo}  # the sources as they were compiled
    with tempfile.TemporaryDirectory(prefix="flashmm-build-") as tmp:
        log = Path(tmp) / "build.log"
        # Cython's and the C compiler's chatter (thousands of lines of warnings about generated code) goes to a
        # log, shown only when the build fails
        with open(log, "w") as out:
            sys.stdout.flush()
            sys.stderr.flush()
            saved = os.dup(1), os.dup(2)
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            try:
                exts = [Extension(m, [str(source_of(m))], extra_compile_args=list(EXTRA_COMPILE_ARGS)) for m in todo]
                exts = cythonize(exts, compiler_directives=COMPILER_DIRECTIVES, build_dir=tmp, nthreads=jobs,
                                 quiet=True, force=True)
                dist = Distribution({"name": "flashmm-speedups", "ext_modules": exts})
                cmd = build_ext(dist)
                cmd.build_lib = str(Path(tmp) / "lib")
                cmd.build_temp = str(Path(tmp) / "temp")
                cmd.parallel = jobs
                cmd.ensure_finalized()
                cmd.run()
                failed = None
            except BaseException as exc:  # noqa: BLE001 - re-raised below with the compiler's words
                failed = exc
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
        if failed is not None:
            if isinstance(failed, ImportError | KeyboardInterrupt):
                raise failed
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise RuntimeError(f"{type(failed).__name__}: {failed}\n{tail}") from failed
        # into place by rename, never by rewriting a file in place: a running daemon has the old copy mapped
        # (overwriting it would crash it), and a process starting meanwhile sees the old or the new file whole
        for m in todo:
            built = Path(cmd.get_ext_fullpath(m))
            dest = PACKAGE_DIR.parent / built.relative_to(Path(tmp) / "lib")
            _replace(dest, built.read_bytes())
    recorded = read_manifest()
    recorded.update(digests)
    _replace(MANIFEST, (json.dumps({"cython": cython_version, "python": sys.version.split()[0],
                                    "sources": dict(sorted(recorded.items()))}, indent=1) + "\n").encode())
    return todo


def _replace(dest: Path, data: bytes) -> None:
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    part.write_bytes(data)
    part.chmod(0o755 if dest.suffix == ".so" else 0o644)
    os.replace(part, dest)


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m flashmm.compile", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="compile the modules whose compiled copy is missing or stale")
    b.add_argument("--jobs", type=int, default=None)
    b.add_argument("--all", action="store_true", help="recompile every module")
    sub.add_parser("status", help="print which modules are compiled, stale or not built (JSON)")
    args = ap.parse_args(argv)
    if args.cmd == "status":
        print(json.dumps(status(), indent=1))
        return 0
    try:
        built = build(list(MODULES) if args.all else None, args.jobs)
    except ImportError as exc:
        print(f"flashmm: not compiled ({exc}); running in pure Python (slower, same results)", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a compiler failure: say so, the source still runs
        print(f"flashmm: compiling failed ({type(exc).__name__}: {exc}); running in pure Python (slower, same "
              f"results)", file=sys.stderr)
        return 1
    n = len(built)
    print(f"flashmm: compiled {n} module{'' if n == 1 else 's'}" if n else "flashmm: compiled modules up to date",
          file=sys.stderr)
    return 0
