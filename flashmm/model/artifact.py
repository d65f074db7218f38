"""The model file: one `torch.export` program (.pt2) with its metadata inside. This is the engine's contract.

- `save(module, example, meta, path)` exports `module` with `torch.export.export` (batch dimension dynamic)
  and writes it with `torch.export.save(..., extra_files={"flashmm_meta.json": ...})`. The normalisation
  (per-input mean and std, as buffers), the softmax and the scale of the expected move are inside the
  exported graph (`Standardised`), so the file alone maps raw `inputs.model_inputs` windows to its outputs.
  The write is atomic (temp file + rename): a reader never sees half a model.
- Two output layouts, told apart by the format version: version 1 (direction models) outputs the three
  probabilities (down, flat, up); version 2 adds a fourth column, the mid's expected move over the model's
  horizon in bps (`OUTPUTS_V2`), which the engine uses as the fair value's shift. Both are served.
- `load(path) -> LoadedModel` refuses, with a `ModelError` naming the file, anything that is not a
  FlashMM model it can serve: a missing, truncated or corrupt file, a file with no FlashMM metadata, a
  format version it does not read, inputs other than `inputs.MODEL_INPUTS`, other classes, or a program
  whose output on a probe window is not three finite probabilities summing to one (plus, for version 2,
  a finite expected move).
- `LoadedModel.predict_proba(window)` is the hot path: (window, N_INPUTS) float32 in, the outputs out
  (p_down, p_flat, p_up[, expected move bps]). It copies into a preallocated tensor and runs under
  `torch.inference_mode`; no other allocation than the output.

AOTInductor (`torch._inductor.aoti_compile_and_package`) was measured (see `bench_inference` and the model
card): 2-3x faster per call (TCN p50 ~100 us vs ~230 us), but it compiles C++ with gcc for 8-30 s (TCN 8 s,
GRU 28 s) into a machine- and torch-build-specific shared library (~1.6 MB), and the exported program already
meets the latency target (p99 < 0.5 ms, budget 5 ms), so the engine loads the exported program.
`compile_aoti` / `load_aoti` are kept for the benchmark.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flashmm.model.inputs import CLASSES, MODEL_INPUTS, N_INPUTS

FORMAT_VERSION = 2  # what `save` writes for a model with an expected-move output
READABLE_VERSIONS = (1, 2)
OUTPUTS_V1 = ("p_down", "p_flat", "p_up")
OUTPUTS_V2 = ("p_down", "p_flat", "p_up", "expected_move_bps")
META_FILE = "flashmm_meta.json"
_MAX_BATCH = 1 << 20


class ModelError(Exception):
    """A model file that cannot be served. The message starts with the file's path."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class Standardised(nn.Module):
    """The whole model in one module: clamp((x - mean) / std) -> net -> softmax (and the expected move).

    `net` maps (batch, window, N_INPUTS) standardised inputs to (batch, 3) logits, or to (batch, 4): three
    logits and the expected move in units of `move_scale_bps`. `forward` returns what is exported:
    (batch, 3) probabilities, or (batch, 4) probabilities and the expected move in bps; `logits` (the net's raw
    output) is for training."""

    def __init__(self, net: nn.Module, mean: Any, std: Any, clip: float = 8.0, move_scale_bps: float = 1.0) -> None:
        super().__init__()
        self.net = net
        mean_t = torch.as_tensor(np.asarray(mean, dtype=np.float32)).reshape(N_INPUTS)
        std_t = torch.as_tensor(np.asarray(std, dtype=np.float32)).reshape(N_INPUTS).clamp_min(1e-6)
        self.register_buffer("mean", mean_t.clone())
        self.register_buffer("std", std_t.clone())
        self.register_buffer("move_scale", torch.tensor([float(move_scale_bps)], dtype=torch.float32))
        self.clip = float(clip)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        z = ((x - self.mean) / self.std).clamp(-self.clip, self.clip)
        return self.net(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logits(x)
        probs = torch.softmax(out[:, : len(CLASSES)], dim=-1)
        if out.shape[-1] == len(CLASSES):
            return probs
        return torch.cat([probs, out[:, len(CLASSES):] * self.move_scale], dim=-1)


def _jsonable(o: Any) -> Any:
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, (np.floating, float)):
        f = float(o)
        return f if math.isfinite(f) else None
    if isinstance(o, (str, int, bool)) or o is None:
        return o
    if isinstance(o, Path):
        return str(o)
    return str(o)


def meta_json(meta: dict) -> str:
    return json.dumps(_jsonable(meta), indent=1, sort_keys=True)


def save(module: nn.Module, example: torch.Tensor, meta: dict, path: str | os.PathLike) -> int:
    """Export `module` (inputs (batch, window, N_INPUTS) -> (batch, 3) probabilities, or (batch, 4) with the
    expected move) with its metadata.

    `meta` must carry at least `window`; `format_version` (1 for three outputs, 2 for four), `outputs`,
    `inputs` and `classes` are filled in here. Returns the file size in bytes."""
    path = Path(path)
    module = module.eval()
    if example.ndim != 3 or example.shape[2] != N_INPUTS:
        raise ValueError(f"example must be (batch, window, {N_INPUTS}), got {tuple(example.shape)}")
    window = int(example.shape[1])
    if int(meta.get("window", window)) != window:
        raise ValueError(f"meta window {meta.get('window')} != example window {window}")
    example = example.detach().to(torch.float32)
    if example.shape[0] < 2:  # a batch of 1 would be specialised to a constant; export with 2, serve any size
        example = example[:1].expand(2, -1, -1).contiguous()
    with torch.no_grad():
        n_out = int(module(example).shape[-1])
    if n_out not in (len(OUTPUTS_V1), len(OUTPUTS_V2)):
        raise ValueError(f"module outputs {n_out} columns, expected {len(OUTPUTS_V1)} or {len(OUTPUTS_V2)}")
    version = 1 if n_out == len(OUTPUTS_V1) else 2
    meta = dict(meta)
    meta.update(format_version=version, inputs=list(MODEL_INPUTS), classes=list(CLASSES), window=window,
                outputs=list(OUTPUTS_V1 if version == 1 else OUTPUTS_V2))
    meta.setdefault("torch_version", torch.__version__)
    batch = torch.export.Dim("batch", min=1, max=_MAX_BATCH)
    with torch.no_grad(), warnings.catch_warnings():
        # nn.GRU keeps a list of its weights (_flat_weights) that export reports as assigned attributes; the
        # weights themselves are parameters and are exported as such.
        warnings.filterwarnings("ignore", message=r".*_flat_weights.*")
        ep = torch.export.export(module, (example,), dynamic_shapes=({0: batch},))
        want = module(example)
        got = ep.module()(example)
    if got.shape != (example.shape[0], n_out) or not torch.allclose(got, want, atol=1e-5, rtol=0):
        raise ModelError(path, "exported program does not reproduce the eager module's output")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + path.stem + ".", suffix=".tmp.pt2", dir=path.parent)
    os.close(fd)
    try:
        torch.export.save(ep, tmp, extra_files={META_FILE: meta_json(meta)})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; a model file is an ordinary readable file
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path.stat().st_size


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class LoadedModel:
    """A model file loaded and checked, ready to serve."""

    def __init__(self, path: Path, meta: dict, program: torch.export.ExportedProgram) -> None:
        self.path = path
        self.meta = meta
        self.program = program
        self.window = int(meta["window"])
        self.n_outputs = len(OUTPUTS_V2) if meta.get("format_version") == 2 else len(OUTPUTS_V1)
        self.module = program.module()  # checks its inputs against the exported spec on every call
        # The hot path calls the graph's forward directly: it skips the module's call hooks (the input-spec
        # check, ~45 us per call; predict_proba checks the shape itself and always passes its own float32
        # tensor, so nothing is lost).
        self._forward = self.module.forward
        self.sha256 = _sha256(path)
        self._x = torch.zeros(1, self.window, N_INPUTS, dtype=torch.float32)
        self._xn = self._x.numpy()  # shares memory with self._x

    @property
    def name(self) -> str:
        return f"{self.meta.get('architecture', '?')} {self.path.name} ({self.sha256[:8]})"

    @property
    def has_expected_move(self) -> bool:
        return self.n_outputs == len(OUTPUTS_V2)

    def predict_proba(self, window: np.ndarray) -> np.ndarray:
        """(window, N_INPUTS) raw model inputs, oldest row first -> (3,) p_down, p_flat, p_up, or (4,) with the
        expected move in bps for a version 2 model (float32).

        Reuses one input buffer: not for concurrent use from several threads (the engine calls it from its
        one event loop)."""
        if window.shape != self._xn.shape[1:]:
            raise ValueError(f"window shape {window.shape} != {self._xn.shape[1:]}")
        np.copyto(self._xn[0], window, casting="unsafe")
        with torch.inference_mode():
            out = self._forward(self._x)
        return out.numpy()[0]

    def predict_proba_batch(self, x: np.ndarray, chunk: int = 8192) -> np.ndarray:
        """(n, window, N_INPUTS) -> (n, 3), or (n, 4) for a version 2 model."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[1:] != self._xn.shape[1:]:
            raise ValueError(f"batch shape {x.shape} != (n, {self.window}, {N_INPUTS})")
        out = np.empty((len(x), self.n_outputs), dtype=np.float32)
        with torch.inference_mode():
            for i in range(0, len(x), chunk):
                xb = x[i : i + chunk]
                if len(xb) == 0:
                    continue
                out[i : i + len(xb)] = self.module(torch.from_numpy(np.ascontiguousarray(xb))).numpy()
        return out


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def load(path: str | os.PathLike) -> LoadedModel:
    """Load and check a model file. Raises ModelError (message names the file) when it cannot be served."""
    p = Path(path)
    if not p.exists():
        raise ModelError(p, "no such model file")
    if not p.is_file():
        raise ModelError(p, "not a file")
    extra: dict[str, Any] = {META_FILE: ""}
    # torch logs the real reason for a bad file as a warning with a traceback, then raises a generic error:
    # keep its record for our one-line message instead of letting it print
    export_log = logging.getLogger("torch.export")
    caught = _Collect()
    handlers, export_log.handlers = export_log.handlers, [caught]  # torch attaches its own stderr handler
    propagate, export_log.propagate = export_log.propagate, False
    try:
        ep = torch.export.load(str(p), extra_files=extra)
    except Exception as exc:  # noqa: BLE001 - any failure to read is the same verdict: unusable file
        root: BaseException = exc
        for rec in caught.records:
            if rec.exc_info and rec.exc_info[1] is not None:
                root = rec.exc_info[1]
        raise ModelError(p, f"not a readable torch.export model file ({type(root).__name__}: {str(root)[:200]})") from exc
    finally:
        export_log.handlers = handlers
        export_log.propagate = propagate
    raw = extra.get(META_FILE) or ""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", "replace")
    if not raw:
        raise ModelError(p, f"no {META_FILE} inside: not a FlashMM model file")
    try:
        meta = json.loads(raw)
    except ValueError as exc:
        raise ModelError(p, f"{META_FILE} is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict):
        raise ModelError(p, f"{META_FILE} is not an object")
    ver = meta.get("format_version")
    if ver not in READABLE_VERSIONS:
        raise ModelError(p, f"model format version {ver!r}, this FlashMM reads versions "
                            f"{', '.join(map(str, READABLE_VERSIONS))}")
    inputs = tuple(meta.get("inputs") or ())
    if inputs != MODEL_INPUTS:
        missing = [i for i in MODEL_INPUTS if i not in inputs]
        extra_in = [i for i in inputs if i not in MODEL_INPUTS]
        raise ModelError(p, f"model inputs differ from this FlashMM's MODEL_INPUTS (missing {missing}, unknown "
                            f"{extra_in}{', order differs' if not missing and not extra_in else ''})")
    if tuple(meta.get("classes") or ()) != CLASSES:
        raise ModelError(p, f"model classes {meta.get('classes')} != {list(CLASSES)}")
    window = meta.get("window")
    if not isinstance(window, int) or window < 1:
        raise ModelError(p, f"bad window {window!r} in metadata")
    meta["file_bytes"] = p.stat().st_size
    try:
        m = LoadedModel(p, meta, ep)
        probe = m.predict_proba(np.zeros((window, N_INPUTS), dtype=np.float32))
    except Exception as exc:  # noqa: BLE001
        raise ModelError(p, f"program does not run on a ({window}, {N_INPUTS}) window ({type(exc).__name__}: "
                            f"{str(exc)[:200]})") from exc
    want = "3 probabilities" if m.n_outputs == len(OUTPUTS_V1) else "3 probabilities and an expected move"
    if (probe.shape != (m.n_outputs,) or not np.all(np.isfinite(probe))
            or abs(float(probe[: len(CLASSES)].sum()) - 1.0) > 1e-4):
        raise ModelError(p, f"program output {probe!r} is not {want} (format version {ver})")
    return m


def compile_aoti(model_path: str | os.PathLike, package_path: str | os.PathLike) -> Path:
    """AOTInductor-compile a saved model into a package (needs a C++ compiler). For measurement."""
    ep = torch.export.load(str(model_path))
    out = torch._inductor.aoti_compile_and_package(ep, package_path=str(package_path))
    return Path(out)


def load_aoti(package_path: str | os.PathLike) -> Any:
    """A callable (batch, window, N_INPUTS) tensor -> (batch, 3) probabilities from an AOTI package."""
    return torch._inductor.aoti_load_package(str(package_path))
