"""Inference runtimes for a bundle: PyTorch (the reference), ONNX Runtime and OpenVINO.

:func:`export_onnx` writes a bundle as an ONNX graph that takes **raw band values** (float32
``(B, C, H, W)`` in card order: Sentinel-2 reflectance x 1e4, Sentinel-1 dB; NaN = nodata) and
returns **logits** ``(B, K, H, W)``: the card's normalisation (:meth:`models.bundle.Bundle.normalize`,
including NaN -> 0) is part of the graph, so the graph alone reproduces the bundle. The card's
bands, normalisation, classes (names, ids, colours), tile and GSD travel in the ONNX metadata
(``metadata_props``) so that other tools (QGIS plugins, ONNX Runtime in other languages) can use
the model without this package; the full card is under the key ``card``.

:class:`OnnxForward` runs such a graph with ONNX Runtime or OpenVINO and is a
:data:`core.inference.tiling.ForwardFn` (softmax probabilities), like a :class:`models.bundle.Bundle`.
onnxruntime/openvino/onnx are imported lazily, only when used, so importing this module costs
nothing beyond torch.

:class:`ForwardFactory` is a small picklable recipe (bundle folder, runtime, precision, threads)
that builds the forward callable where it runs, e.g. on each Dask worker.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.bundle import Bundle, BundleError, load_bundle, read_card

__all__ = [
    "RUNTIMES",
    "DEFAULT_RUNTIME",
    "ForwardFactory",
    "OnnxForward",
    "available_runtimes",
    "bundle_checksum",
    "choose_runtime",
    "cpu_model",
    "measure_runtimes",
    "export_onnx",
    "load_forward",
    "onnx_metadata",
    "onnx_path_for",
]

RUNTIMES = ("torch", "onnxruntime", "openvino")
DEFAULT_RUNTIME = "torch"
"""The default runtime: the reference, and the fastest measured on the development machine together
with ``precision="auto"`` (``benchmarks/bench_runtimes.py``; see the README). ``runtime="auto"``
(:func:`choose_runtime`) measures on the user's machine instead."""

ONNX_OPSET = 18


def available_runtimes() -> list[str]:
    """The runtimes whose packages are installed (``torch`` always)."""
    import importlib.util

    out = ["torch"]
    for name, module in (("onnxruntime", "onnxruntime"), ("openvino", "openvino")):
        if importlib.util.find_spec(module) is not None:
            out.append(name)
    return out


def bundle_checksum(path: str | Path) -> str:
    """SHA-256 (first 16 hex digits) of a bundle's ``model.safetensors`` and ``card.json``.

    Raises:
        BundleError: The bundle lacks one of the files.
    """
    path = Path(path)
    h = hashlib.sha256()
    for name in ("model.safetensors", "card.json"):
        f = path / name
        if not f.exists():
            raise BundleError(f"bundle {path} has no {name}")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def onnx_metadata(bundle: Bundle) -> dict[str, str]:
    """The ONNX ``metadata_props`` of a bundle: card fields as strings (lists/dicts as JSON).

    Keys: ``card`` (the whole card), ``bands``, ``mean``, ``std``, ``preprocessing``, ``input``
    (what the graph expects), ``output``, ``class_names`` (``{"0": "water", ...}`` by output
    channel), ``class_ids``, ``class_colors``, ``class_scheme``, ``tile``, ``gsd_m``,
    ``model_type`` (``"Segmentor"``), ``resolution`` (cm per pixel).
    """
    card = bundle.card
    classes = card.classes["classes"]
    return {
        "card": card.to_json(),
        "model_type": "Segmentor",
        "bands": json.dumps(list(card.bands)),
        "mean": json.dumps(list(card.mean)),
        "std": json.dumps(list(card.std)),
        "preprocessing": card.preprocessing,
        "input": "float32 (B, C, H, W) raw band values in the order of 'bands' (Sentinel-2 reflectance x 1e4, "
                 "Sentinel-1 dB), NaN = nodata; H and W multiples of 32; the normalisation is inside the graph",
        "output": "float32 (B, K, H, W) logits; softmax over K gives class probabilities; channel k is class_names[k]",
        "class_names": json.dumps({str(k): c["name"] for k, c in enumerate(classes)}),
        "class_ids": json.dumps([int(c["id"]) for c in classes]),
        "class_colors": json.dumps([c.get("color", "") for c in classes]),
        "class_scheme": card.scheme_name,
        "tile": str(card.tile),
        "gsd_m": str(card.gsd_m),
        "resolution": str(card.gsd_m * 100),
    }


class _RawInput(torch.nn.Module):
    """Normalisation + network: raw band values in, logits out (what is exported)."""

    def __init__(self, bundle: Bundle) -> None:
        super().__init__()
        self.bundle = bundle
        self.net = bundle.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.bundle.normalize(x))


def export_onnx(bundle: Bundle | str | Path, path: str | Path, *, opset: int = ONNX_OPSET) -> Path:
    """Export a bundle to an ONNX file with its card in the metadata.

    The graph has one input ``bands`` (float32 ``(B, C, H, W)``, batch, height and width dynamic)
    and one output ``logits`` (float32 ``(B, K, H, W)``); see the module docstring. Weights are
    exported in float32. The file is written atomically (a temporary file renamed into place).

    Args:
        bundle: A loaded bundle or a bundle folder.
        path: The ``.onnx`` file to write.
        opset: ONNX opset version.

    Returns:
        ``path``.

    Raises:
        BundleError: The bundle cannot be loaded.
        ImportError: The ``onnx`` package is not installed.
    """
    import onnx

    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle, precision="fp32", runtime="torch")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wrapper = _RawInput(bundle).eval().to(memory_format=torch.contiguous_format)
    x = torch.zeros(1, len(bundle.card.bands), bundle.card.tile, bundle.card.tile)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial.onnx")
    try:
        import warnings

        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapper, (x,), str(tmp), input_names=["bands"], output_names=["logits"], opset_version=opset,
                dynamic_axes={"bands": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch", 2: "height", 3: "width"}},
                dynamo=False,
            )
        model = onnx.load(str(tmp))
        del model.metadata_props[:]
        for k, v in onnx_metadata(bundle).items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, v
        model.producer_name = "lulc-explorer"
        model.doc_string = f"LULC Explorer bundle {bundle.card.name!r} ({bundle.card.arch}/{bundle.card.encoder})"
        onnx.save(model, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _cache_dir() -> Path:
    cache = os.environ.get("LULC_CACHE_DIR")
    return (Path(cache).expanduser() if cache else Path.home() / ".cache" / "lulc-explorer") / "onnx"


def onnx_path_for(bundle_dir: str | Path, *, export: bool = True) -> Path:
    """The ONNX file of a bundle, exported once if needed.

    ``<bundle>/model.onnx`` if present and newer than the weights, else
    ``$LULC_CACHE_DIR/onnx/<checksum>.onnx`` (``~/.cache/lulc-explorer/onnx``), exported on first use.

    Args:
        bundle_dir: Bundle folder.
        export: Export into the cache when no file exists yet (else raise).

    Raises:
        BundleError: No ONNX file and ``export`` is False, or the bundle cannot be loaded.
    """
    bundle_dir = Path(bundle_dir)
    own = bundle_dir / "model.onnx"
    if own.exists() and own.stat().st_mtime >= (bundle_dir / "model.safetensors").stat().st_mtime:
        return own
    cached = _cache_dir() / f"{bundle_checksum(bundle_dir)}.onnx"
    if not cached.exists():
        if not export:
            raise BundleError(f"bundle {bundle_dir} has no ONNX export; run `python -m trainer export-onnx --checkpoint {bundle_dir}`")
        export_onnx(bundle_dir, cached)
    return cached


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


class OnnxForward:
    """An exported bundle run by ONNX Runtime or OpenVINO on the CPU; a ForwardFn.

    Args:
        onnx_path: File written by :func:`export_onnx`.
        runtime: ``"onnxruntime"`` or ``"openvino"``.
        threads: Intra-op threads (default: the runtime's own choice, all cores).
        metadata: The file's ``metadata_props`` when the caller has them (:func:`onnx_metadata` of the bundle it
            was exported from); OpenVINO then needs no ``onnx`` import to read them from the file.

    Raises:
        BundleError: The runtime is not installed or the file is not an exported bundle.
    """

    def __init__(self, onnx_path: str | Path, runtime: str = "onnxruntime", *, threads: int | None = None,
                 metadata: dict[str, str] | None = None) -> None:
        self.path = Path(onnx_path)
        self.runtime = runtime
        if runtime == "onnxruntime":
            try:
                import onnxruntime as ort
            except ImportError:
                raise BundleError("onnxruntime is not installed; pip install onnxruntime or use --runtime torch") from None
            opts = ort.SessionOptions()
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            if threads:
                opts.intra_op_num_threads = int(threads)
                opts.inter_op_num_threads = 1
            self._session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
            meta = self._session.get_modelmeta().custom_metadata_map
            self._run = lambda x: self._session.run(["logits"], {"bands": x})[0]
        elif runtime == "openvino":
            try:
                import openvino as ov
            except ImportError:
                raise BundleError("openvino is not installed; pip install openvino or use --runtime torch") from None
            core = ov.Core()
            config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
            if threads:
                config["INFERENCE_NUM_THREADS"] = int(threads)
            compiled = core.compile_model(str(self.path), "CPU", config)
            self._request = compiled.create_infer_request()
            out = compiled.output(0)
            lock = threading.Lock()  # one infer request: calls from several threads (the app's sessions) take turns

            def run(x: np.ndarray) -> np.ndarray:
                with lock:
                    return self._request.infer({0: x})[out]  # a copy of the output (share_outputs=False)

            self._run = run
            if metadata is None:
                import onnx

                metadata = {p.key: p.value for p in onnx.load(str(self.path), load_external_data=False).metadata_props}
            meta = metadata
        else:
            raise BundleError(f"unknown ONNX runtime {runtime!r} (known: onnxruntime, openvino)")
        if "card" not in meta:
            raise BundleError(f"{self.path} is not an LULC Explorer ONNX export (no card in its metadata)")
        self.metadata = meta
        self.bands = json.loads(meta["bands"])
        self.num_classes = len(json.loads(meta["class_ids"]))
        # the card's softmax temperature (fitted by `fit`), so probabilities equal the PyTorch bundle's
        self.temperature = float(json.loads(meta["card"]).get("temperature") or 1.0)

    def logits(self, x: np.ndarray) -> np.ndarray:
        """float32 (B, C, H, W) raw band values -> float32 (B, K, H, W) logits."""
        if x.ndim != 4 or x.shape[1] != len(self.bands):
            raise BundleError(f"expected (B, {len(self.bands)}, H, W) input, got {x.shape}")
        return np.asarray(self._run(np.ascontiguousarray(x, dtype=np.float32)), dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """float32 (B, C, H, W) raw band values -> float32 (B, K, H, W) softmax probabilities.

        The probabilities are those of ``logits / temperature`` with the card's temperature, as
        :class:`models.bundle.Bundle` computes them.
        """
        logits = self.logits(x)
        if self.temperature != 1.0:
            logits /= np.float32(self.temperature)
        return _softmax(logits)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform`` elsewhere), e.g. ``"Intel(R) Xeon(R) Processor"``."""
    import platform

    try:
        return next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def _machine_key() -> str:
    import importlib.metadata as md

    cpu = cpu_model()
    versions = []
    for pkg in ("torch", "onnxruntime", "openvino"):
        try:
            versions.append(f"{pkg}={md.version(pkg)}")
        except md.PackageNotFoundError:
            pass
    return f"{cpu}|{os.cpu_count()} cores|{torch.get_num_threads()} threads|{' '.join(versions)}"


def measure_runtimes(bundle_dir: str | Path, *, batch: int = 4, tile: int | None = None, rounds: int = 2,
                     threads: int | None = None) -> list[dict]:
    """Time every installed runtime and CPU precision on one batch of the bundle's input.

    The batch is random raw band values (500..4000, float32 (B, C, T, T)); each candidate gets one
    warm-up call, then ``rounds`` timed calls (median). Its labels are compared with PyTorch fp32,
    the reference: a candidate is usable when it reproduces it, i.e. logits within 1e-3 and at
    least 99.9 % of labels equal. bf16 autocast does not (logits move by about 0.05, about 0.7 % of
    labels change on the default model), so it is measured and reported but never chosen: a map
    made with ``auto`` equals the PyTorch fp32 map up to near-ties, on any machine.

    Args:
        bundle_dir: Bundle folder.
        batch: Tiles per call.
        tile: Tile side in pixels (default: the card's tile, the one inference runs with).
        rounds: Timed calls per candidate.
        threads: Intra-op threads (None: each runtime's default, all cores).

    Returns:
        One dict per candidate: ``runtime``, ``precision``, ``images_s``, ``label_agreement``,
        ``max_abs_logit_diff``, ``usable`` (and ``error`` where it could not run).
    """
    import time

    from models.bundle import _bf16_supported

    card = read_card(bundle_dir)
    tile = tile or int(card.tile)
    x = np.random.default_rng(0).uniform(500, 4000, (batch, len(card.bands), tile, tile)).astype(np.float32)
    candidates = [("torch", "fp32")] + ([("torch", "bf16")] if _bf16_supported() else [])
    candidates += [(rt, "fp32") for rt in available_runtimes() if rt != "torch"]
    rows, ref = [], None
    for rt, prec in candidates:
        row = {"runtime": rt, "precision": prec}
        try:
            fwd = load_forward(bundle_dir, runtime=rt, precision=prec, threads=threads)
            logits = fwd.logits
            out = np.asarray(logits(x), np.float32)
            times = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                logits(x)
                times.append(time.perf_counter() - t0)
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot run is reported, not fatal
            rows.append({**row, "usable": False, "error": f"{type(exc).__name__}: {exc}"[:200]})
            continue
        if ref is None:
            ref = out
        agree = float((out.argmax(1) == ref.argmax(1)).mean())
        diff = float(np.abs(out - ref).max())
        row.update(images_s=round(batch / float(np.median(times)), 3), label_agreement=round(agree, 5),
                   max_abs_logit_diff=diff, usable=agree >= 0.999 and diff <= 1e-3)
        rows.append(row)
    return rows


def choose_runtime(bundle_dir: str | Path, *, threads: int | None = None, cache: bool = True,
                   measure: bool = True) -> tuple[str, str, list[dict]] | None:
    """The fastest usable runtime and precision for a bundle on this machine, measured once and cached.

    The measurement (:func:`measure_runtimes`, about 10-30 s on a 2-core CPU, ONNX export included)
    is cached in ``$LULC_CACHE_DIR/runtime-choice.json`` (``~/.cache/lulc-explorer``), keyed by the
    bundle's checksum, the CPU model, core and thread counts and the runtimes' versions, so a new
    machine, bundle or library version measures again.

    Args:
        bundle_dir: Bundle folder.
        threads: Intra-op threads the run will use.
        cache: Read and write the cache.
        measure: Measure when nothing is cached (False: return ``None`` instead).

    Returns:
        ``(runtime, precision, measurements)``, or ``None`` when nothing is cached and ``measure``
        is False.
    """
    path = _cache_dir().parent / "runtime-choice.json"
    key = f"{bundle_checksum(bundle_dir)}|{_machine_key()}|{threads}"
    table = {}
    if cache and path.exists():
        try:
            table = json.loads(path.read_text())
        except (OSError, ValueError):  # unreadable or corrupt: measured again and rewritten
            table = {}
        if not isinstance(table, dict):
            table = {}
    rows = table.get(key)
    if rows is not None and not (isinstance(rows, list) and all(isinstance(r, dict) and "runtime" in r for r in rows)):
        rows = None  # a damaged entry: measured again
    if rows is None and not measure:
        return None
    if rows is None:
        rows = measure_runtimes(bundle_dir, threads=threads)
        if cache:
            table[key] = rows
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(table, indent=1))
            os.replace(tmp, path)
    usable = [r for r in rows if r.get("usable")]
    best = max(usable, key=lambda r: r["images_s"]) if usable else {"runtime": "torch", "precision": "fp32"}
    return best["runtime"], best["precision"], rows


def load_forward(bundle_dir: str | Path, *, runtime: str = DEFAULT_RUNTIME, precision: str = "fp32",
                 threads: int | None = None, onnx_path: str | Path | None = None):
    """A forward callable (raw bands -> probabilities) for a bundle on the chosen runtime.

    Args:
        bundle_dir: Bundle folder.
        runtime: ``torch`` (reference; GPUs, bf16; always PyTorch, whatever the card's ``runtime``), ``onnxruntime``
            or ``openvino`` (CPU, fp32).
        precision: For ``torch``: ``fp32``, ``bf16`` or ``auto`` (see :class:`models.bundle.Bundle`).
        threads: Intra-op threads (``torch.set_num_threads`` for torch); None leaves the default.
        onnx_path: The ONNX file for the ONNX runtimes (default :func:`onnx_path_for`).

    Returns:
        A :class:`models.bundle.Bundle` or an :class:`OnnxForward`.

    Raises:
        BundleError: Unknown runtime, runtime not installed, or a bad bundle.
    """
    if runtime not in RUNTIMES:
        raise BundleError(f"unknown runtime {runtime!r} (known: {', '.join(RUNTIMES)})")
    if threads:
        torch.set_num_threads(int(threads))
    if runtime == "torch":
        return load_bundle(bundle_dir, precision=precision, runtime="torch")
    return OnnxForward(onnx_path or onnx_path_for(bundle_dir), runtime, threads=threads)


@dataclass(frozen=True)
class ForwardFactory:
    """Picklable recipe for :func:`load_forward`; calling it builds the forward callable.

    Attributes:
        bundle_dir: Bundle folder (absolute, so that workers elsewhere find it on a shared path).
        runtime: See :func:`load_forward`.
        precision: See :func:`load_forward`.
        threads: Intra-op threads per worker.
        onnx_path: ONNX file for the ONNX runtimes (export it before starting workers).
    """

    bundle_dir: str
    runtime: str = DEFAULT_RUNTIME
    precision: str = "fp32"
    threads: int | None = None
    onnx_path: str | None = None

    def __call__(self):
        """Build the forward callable (loads the model)."""
        return load_forward(self.bundle_dir, runtime=self.runtime, precision=self.precision,
                            threads=self.threads, onnx_path=self.onnx_path)

    def card_summary(self) -> dict:
        """Bands, class ids and class count from the bundle's card (no weights loaded)."""
        card = read_card(self.bundle_dir)
        return {"bands": list(card.bands), "class_ids": [int(c["id"]) for c in card.classes["classes"]],
                "num_classes": card.num_classes}
