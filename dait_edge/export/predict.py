"""Classify images with an exported artifact using only its sidecar: no torch, no dait_edge model code (ONNX
through ONNX Runtime, .tflite through the LiteRT interpreter; a .pte through ExecuTorch, which brings torch).

This is what a deployment needs and the proof that the sidecar is complete: resize the short side to
size / crop_pct with the sidecar's interpolation, centre crop, scale to [0, 1], normalise, run ORT,
softmax, read the class name. It mirrors torchvision's PIL path (Resize, CenterCrop, ToTensor,
Normalize) so predictions match the PyTorch eval transform.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from dait_edge.records import Sidecar

_PIL_INTERPOLATION = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def preprocess(image: Image.Image, sidecar: Sidecar) -> np.ndarray:
    """One PIL image -> (C, H, W) float32, as the student saw its test images."""
    _, height, width = sidecar.input_size
    image = image.convert("RGB")
    # Resize: short side -> round(size / crop_pct), long side scaled and truncated (torchvision's rule).
    short = int(round(height / sidecar.crop_pct))
    w, h = image.size
    if w <= h:
        new_w, new_h = short, int(short * h / w)
    else:
        new_w, new_h = int(short * w / h), short
    if (new_w, new_h) != (w, h):
        resample = _PIL_INTERPOLATION.get(sidecar.interpolation, Image.Resampling.BILINEAR)
        image = image.resize((new_w, new_h), resample)
    pixels = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, C)
    # Centre crop, zero-padding first when the image is smaller than the crop (torchvision's rule).
    ih, iw = pixels.shape[:2]
    if ih < height or iw < width:
        pad_h, pad_w = max(0, height - ih), max(0, width - iw)
        pixels = np.pad(pixels, ((pad_h // 2, (pad_h + 1) // 2), (pad_w // 2, (pad_w + 1) // 2), (0, 0)))
        ih, iw = pixels.shape[:2]
    top, left = int(round((ih - height) / 2.0)), int(round((iw - width) / 2.0))
    pixels = pixels[top : top + height, left : left + width]
    mean = np.asarray(sidecar.mean, dtype=np.float32)
    std = np.asarray(sidecar.std, dtype=np.float32)
    return np.ascontiguousarray(((pixels - mean) / std).transpose(2, 0, 1), dtype=np.float32)


def _on_device_model(artifact_path: Path):
    """An ExecuTorch .pte or LiteRT .tflite in its own runtime (None for ONNX): `logits(images)`."""
    if artifact_path.suffix == ".pte":
        from dait_edge.export.on_device import PteProgram, require_executorch

        require_executorch(f"predicting with {artifact_path.name}")
        return PteProgram(artifact_path)
    if artifact_path.suffix == ".tflite":
        from dait_edge.export.on_device import TfliteModel, require_litert

        require_litert(f"predicting with {artifact_path.name}")
        return TfliteModel(artifact_path)
    return None


def predict_logits(artifact_path: str | Path, image_paths: Sequence[str | Path]) -> np.ndarray:
    sidecar = Sidecar.verified_for(artifact_path)
    batch = []
    for path in image_paths:
        with Image.open(path) as img:
            batch.append(preprocess(img, sidecar))
    model = _on_device_model(Path(artifact_path))
    if model is not None:
        return model.logits(np.stack(batch))
    import onnxruntime as ort

    session = ort.InferenceSession(str(artifact_path), providers=["CPUExecutionProvider"])
    if sidecar.dynamic_batch:
        return session.run([sidecar.output_name], {sidecar.input_name: np.stack(batch)})[0]
    return np.concatenate([session.run(None, {sidecar.input_name: x[None]})[0] for x in batch])


def predict(artifact_path: str | Path, image_paths: Sequence[str | Path]) -> list[tuple[str, float]]:
    """(class name, softmax probability) of the top class, one per image."""
    classes = Sidecar.read_for(artifact_path).classes
    logits = predict_logits(artifact_path, image_paths).astype(np.float64)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    top = probs.argmax(1)
    return [(classes[i], float(p[i])) for i, p in zip(top, probs, strict=True)]
