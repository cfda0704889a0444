"""Which number formats training and the frozen VLM use on a device, and the CUDA settings for speed."""

from __future__ import annotations

import torch


def autocast_dtype_for(device: torch.device) -> torch.dtype | None:
    """bf16 only where the GPU has it natively (compute capability 8.0+): `is_bf16_supported()` also says
    yes for emulated bf16 (T4, V100), whose kernels are slow; those GPUs get fp16 and a GradScaler."""
    if device.type != "cuda":
        return None  # CPU training stays in fp32: bf16 autocast there is slower on most CPUs
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def vlm_dtype_for(device: torch.device) -> torch.dtype:
    """The frozen VLM's weights: the training autocast dtype (bf16 where the GPU has it natively, else fp16),
    fp32 on the CPU."""
    return autocast_dtype_for(device) or torch.float32


def configure_cuda(device: torch.device) -> None:
    """Fast kernels for fixed-size training batches: cuDNN autotuning, TF32 matmuls and convolutions."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
