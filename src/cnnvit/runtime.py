"""Runtime: device, precision, attention implementation, the accelerator and model placement.

Everything about *where* and *how* the arithmetic runs lives here, used alike by the pipeline,
the benchmark, evaluation and the analyses. Precision is applied with `torch.autocast` (and a
`GradScaler` for fp16) by the training loop itself rather than through accelerate's
`mixed_precision`, because accelerate keeps that setting in process-wide state that cannot be
changed once set; one process may train an fp32 and a bf16 model one after the other (tests,
notebooks, a study). `Accelerator` still places models, wraps them for several processes,
gathers evaluation results and saves/loads training state.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from .config import ATTENTIONS, DEVICES, PRECISIONS
from .errors import CnnvitError

if TYPE_CHECKING:
    from accelerate import Accelerator

    from .data.preprocess import BatchPreprocessor
    from .models.build import BuiltModel

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Devices with torch's fused (single-kernel) AdamW. On the 2-core CPUs in BENCHMARKS.md it cut
# 4-5% off a training step of resnet-micro and vit-micro against the default foreach kernel.
FUSED_ADAMW_DEVICES = ("cpu", "cuda")


# auto picks bf16 on a CPU only where its matrix products measure at least this much faster
# than fp32: AMX runs them 3-4x faster, but a CPU with AVX-512 BF16 and no AMX can run them
# slower than fp32 (0.6x on the 2-core Xeon in BENCHMARKS.md), and then bf16 only loses.
BF16_MIN_SPEEDUP = 1.2


def cpu_has_bf16() -> bool:
    """True if oneDNN runs bf16 natively on this CPU (AVX-512 BF16 or AMX)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@functools.cache
def cpu_bf16_speedup(size: int = 1024, repeats: int = 5) -> float:
    """How many times faster a bf16 matrix product runs than an fp32 one on this CPU, at the
    current thread count: the median of `repeats` timed products of two `size`-square matrices
    per dtype, after two warm-up ones (about 0.3 s in all, once per process)."""

    def median_seconds(dtype: torch.dtype) -> float:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        times = []
        for step in range(repeats + 2):
            start = time.perf_counter()
            a @ b
            if step >= 2:
                times.append(time.perf_counter() - start)
        return sorted(times)[len(times) // 2]

    return median_seconds(torch.float32) / median_seconds(torch.bfloat16)


def cpu_fast_bf16() -> bool:
    """True where bf16 pays on this CPU: native (cpu_has_bf16) and measured faster than fp32
    by BF16_MIN_SPEEDUP (cpu_bf16_speedup)."""
    return cpu_has_bf16() and cpu_bf16_speedup() >= BF16_MIN_SPEEDUP


def resolve_device(requested: str) -> torch.device:
    """auto: CUDA, then Apple MPS, then CPU. An explicit device must exist."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if requested == "auto":
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    if requested not in DEVICES:
        raise CnnvitError(f"unknown device '{requested}': use one of {', '.join(DEVICES)}")
    if (requested == "cuda" and not cuda) or (requested == "mps" and not mps):
        raise CnnvitError(f"--device {requested} is not available here: use --device auto or cpu")
    return torch.device(requested)


def resolve_precision(requested: str, device: torch.device) -> str:
    """bf16 where the hardware runs it natively and fast, else fp32 (auto); fp16 only where it
    is fast. On a CPU, "fast" is measured (cpu_fast_bf16).

    fp16 needs a gradient scaler and real fp16 kernels: CUDA and MPS have them, CPUs do not
    (autocast to fp16 on a CPU is emulated and slower than fp32), so fp16 on a CPU is refused.
    """
    if requested not in PRECISIONS:
        raise CnnvitError(f"unknown precision '{requested}': use one of {', '.join(PRECISIONS)}")
    if requested == "fp16" and device.type == "cpu":
        raise CnnvitError("--precision fp16 needs a GPU: use bf16 or fp32 on a CPU")
    if requested != "auto":
        return requested
    if device.type == "cuda":
        # Native bf16 only (Ampere and later): emulated bf16 on older GPUs is slower than fp32.
        return "bf16" if torch.cuda.is_bf16_supported(including_emulation=False) else "fp16"
    if device.type == "cpu":
        return "bf16" if cpu_fast_bf16() else "fp32"
    return "fp32"


def resolve_attention(requested: str, device: torch.device, precision: str) -> str:
    """The fastest attention measured for the device: on CPUs in bf16, eager beat SDPA by 25%
    (BENCHMARKS.md); SDPA's fused kernels win on CUDA and in fp32."""
    if requested not in ATTENTIONS:
        raise CnnvitError(f"unknown attention '{requested}': use one of {', '.join(ATTENTIONS)}")
    if requested != "auto":
        return requested
    return "eager" if device.type == "cpu" and precision == "bf16" else "sdpa"


@dataclass(frozen=True)
class Runtime:
    """Where and how a model runs: resolved device, precision and attention implementation."""

    device: torch.device
    precision: str  # fp32 | bf16 | fp16
    attention: str  # eager | sdpa

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Mixed precision for a forward pass (a no-op in fp32)."""
        dtype = AUTOCAST_DTYPES.get(self.precision)
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=bool(dtype)):
            yield

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A loss scaler, enabled for fp16 only (bf16 has fp32's exponent range)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    @property
    def fused_optimizer(self) -> bool:
        """Whether AdamW runs as torch's fused kernel on this device."""
        return self.device.type in FUSED_ADAMW_DEVICES

    def optimizer(self, params: Any, lr: float) -> torch.optim.AdamW:
        """AdamW for parameters on this device: fused where torch has that kernel.

        The fused kernel does the same arithmetic as the default one, in one pass over each
        tensor instead of several (it differs only in float rounding).
        """
        return torch.optim.AdamW(params, lr=lr, fused=self.fused_optimizer or None)

    def describe(self) -> dict[str, str]:
        return {"device": str(self.device), "precision": self.precision,
                "attention": self.attention,
                "optimizer": "AdamW (fused)" if self.fused_optimizer else "AdamW"}  # fmt: skip


def resolve_runtime(
    device: str = "auto", precision: str = "auto", attention: str = "auto"
) -> Runtime:
    """Resolve the three `auto` settings for this machine, with one-line errors."""
    torch_device = resolve_device(device)
    chosen = resolve_precision(precision, torch_device)
    return Runtime(torch_device, chosen, resolve_attention(attention, torch_device, chosen))


def make_accelerator(runtime: Runtime, **kwargs: Any) -> Accelerator:
    """An Accelerator on the runtime's device. Precision is the loop's job (see module doc)."""
    from accelerate import Accelerator

    return Accelerator(cpu=runtime.device.type == "cpu", **kwargs)


def place_model(built: BuiltModel, runtime: Runtime) -> tuple[torch.nn.Module, BatchPreprocessor]:
    """The model on the runtime's device in its fastest memory format, and its preprocessor.

    CNNs run channels_last (oneDNN's and cuDNN's fast convolution layout; MPS gains nothing).
    """
    from .data.preprocess import BatchPreprocessor

    channels_last = built.family == "cnn" and runtime.device.type != "mps"
    model = built.model.to(runtime.device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, BatchPreprocessor(built.processor, runtime.device, channels_last)


def images_per_second(images: int, seconds: float) -> float:
    """The one definition of throughput: images processed per wall-clock second."""
    return images / seconds if seconds > 0 else float("nan")
