"""Does an artifact compute what the PyTorch student computes? And how fast, on this CPU?

Images are preprocessed once (`images.py`) into one array; the PyTorch logits are computed once; every
artifact is then run by ONNX Runtime on the same array and compared here.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from dait_edge.export.images import ImageBatch
from dait_edge.records import Parity


def torch_logits(model, images: np.ndarray, batch: int = 64) -> np.ndarray:
    import torch

    model = model.eval().cpu()
    outs = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            outs.append(model(torch.from_numpy(images[i : i + batch])).float().numpy())
    return np.concatenate(outs)


def ort_session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # ORT's warnings about unused initialisers are not the user's concern
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_logits(path: str | Path, images: np.ndarray, batch: int = 64) -> np.ndarray:
    session = ort_session(path)
    name = session.get_inputs()[0].name
    return np.concatenate(
        [
            session.run(None, {name: images[i : i + batch]})[0].astype(np.float32)
            for i in range(0, len(images), batch)
        ]
    )


def top1_of(logits: np.ndarray, labels: np.ndarray | None) -> float | None:
    """Top-1 in % (3 decimals) of `logits` against `labels`; None without labels (random inputs)."""
    if labels is None:
        return None
    return round(float((logits.argmax(1) == labels).mean() * 100), 3)


def compare(reference: np.ndarray, artifact: np.ndarray, batch: ImageBatch, threshold: float) -> Parity:
    """The sidecar's `parity` block: agreement of the top-1 class, logit drift, accuracy of each."""
    agreement = float((reference.argmax(1) == artifact.argmax(1)).mean() * 100)
    return Parity(
        samples=int(len(reference)),
        agreement=round(agreement, 3),
        max_abs_diff=float(np.abs(reference - artifact).max()),
        top1_pytorch=top1_of(reference, batch.labels),
        top1_artifact=top1_of(artifact, batch.labels),
        threshold=threshold,
        passed=agreement >= threshold,
        data=batch.source,
        note=batch.note or None,
    )


def latency_ms(
    path: str | Path, input_size: list[int] | tuple[int, ...], runs: int = 20, warmup: int = 3, run=None
) -> float:
    """Median CPU latency at batch 1 (ORT, or `run(image)`: another runtime's request): a quick relative
    measure for the summary, not a benchmark."""
    x = np.random.default_rng(0).standard_normal((1, *input_size), dtype=np.float32)
    if run is None:
        session = ort_session(path)
        name = session.get_inputs()[0].name

        def run(image):
            return session.run(None, {name: image})

    for _ in range(warmup):
        run(x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(x)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def speed_note(name: str, ms: float, fp32_ms: float, than: str = "fp32") -> str:
    ratio = fp32_ms / ms if ms > 0 else float("inf")
    if ratio >= 1.05:
        verdict = f"{ratio:.1f}x faster than {than}"
    elif ratio <= 0.95:
        verdict = f"{1 / ratio:.1f}x slower than {than}"
    else:
        verdict = f"as fast as {than}"
    how = "ORT" if than == "fp32" else "each in its runtime"
    return f"{name} {verdict} on this CPU ({how}, batch 1: {ms:.2f} ms vs {fp32_ms:.2f} ms)"
