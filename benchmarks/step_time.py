"""Training step time of one preset in each precision and memory format, interleaved.

    python benchmarks/step_time.py resnet-micro --threads 2
    python benchmarks/step_time.py vit-micro --threads 2 --profile

Builds one model per setting (fp32/bf16 x contiguous/channels_last; the ViTs have no
channels_last), each with the attention implementation and optimizer the training loop would use
for that precision (runtime.py), then times 10 training steps (forward, backward, gradient
clipping, AdamW) of a random batch of 64 32-px images per setting in turn, 6 rounds, the first
discarded as warm-up. Prints the median images/s per setting and every round's figure. Settings
alternate within a round, so a drift in the machine hits all of them alike. It answers one
question: which precision and layout trains a preset fastest on this machine (the fast path's
choice, runtime.py).

`--profile` then profiles 10 steps of the fast path's own setting (bf16 where the CPU has it) with
`torch.profiler` and splits the step into matrix products, autocast's dtype casts and the rest. It
measures the bf16 matmul peak and prints the step time if every matrix product ran at that peak
while the rest stayed as it is: the ceiling that faster matrix hardware alone could reach.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

from cnnvit.measure import matmul_peak_flops
from cnnvit.models import PRESETS, build_model
from cnnvit.runtime import AUTOCAST_DTYPES, Runtime, resolve_attention, resolve_runtime

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::convolution_backward",
           "aten::mkldnn_convolution")  # fmt: skip
CASTS = ("aten::copy_",)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--profile", action="store_true", help="profile the fast path's step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    family = PRESETS[args.preset].family
    cpu = torch.device("cpu")
    x = torch.randn(args.batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(args.batch_size) % 10
    settings = {}
    for precision in ("fp32", "bf16"):
        runtime = Runtime(cpu, precision, resolve_attention("auto", cpu, precision))
        for layout in ("contiguous", "channels_last"):
            if family == "vit" and layout == "channels_last":
                continue
            names = [str(i) for i in range(10)]
            model = build_model(args.preset, family, names, 32, runtime.attention).model
            if layout == "channels_last":
                model = model.to(memory_format=torch.channels_last)
            optimizer = runtime.optimizer(model.parameters(), 1e-3)
            settings[(precision, layout)] = (model.train(), optimizer, runtime)

    def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, runtime: Runtime,
             layout: str) -> None:  # fmt: skip
        inputs = x.contiguous(memory_format=torch.channels_last) if layout != "contiguous" else x
        with runtime.autocast():  # the loop's own mixed precision (runtime.py)
            logits = model(pixel_values=inputs).logits.float()
        F.cross_entropy(logits, y).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rates: dict[tuple, list[float]] = {key: [] for key in settings}
    for round_number in range(args.rounds):
        for key, (model, optimizer, runtime) in settings.items():
            step(model, optimizer, runtime, key[1])
            start = time.perf_counter()
            for _ in range(10):
                step(model, optimizer, runtime, key[1])
            if round_number:  # the first round warms up every setting
                rates[key].append(10 * args.batch_size / (time.perf_counter() - start))
    for (precision, layout), values in rates.items():
        print(f"{args.preset} {precision} {layout}: {statistics.median(values):.0f} img/s "
              f"(rounds: {', '.join(f'{v:.0f}' for v in values)})")  # fmt: skip
    if args.profile:
        fast = resolve_runtime("cpu")
        key = (fast.precision, "channels_last" if family == "cnn" else "contiguous")
        rate = statistics.median(rates[key])
        profile_step(settings[key], key, step, args.batch_size, rate, family)


def profile_step(
    setting: tuple, key: tuple, step: object, batch_size: int, rate: float, family: str
) -> None:
    """Where one step's time goes, and the step time with every matmul at the dtype's peak.

    Shares come from the profiler (whose own overhead lengthens each operator a little); they
    are applied to the step time measured without it (`batch_size` / `rate` images/s).
    """
    step_ms = batch_size / rate * 1e3
    model, optimizer, runtime = setting
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        for _ in range(10):
            step(model, optimizer, runtime, key[1])  # type: ignore[operator]
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 10 / 1e3  # ms per step
    groups = {"matrix products and convolutions": MATMULS, "autocast casts": CASTS}
    spent = {
        name: sum(e.self_cpu_time_total for e in events if e.key in ops) / 10 / 1e3
        for name, ops in groups.items()
    }
    spent["everything else"] = total - sum(spent.values())
    print(f"\nprofile of {key[0]} {key[1]}, 10 steps: {total:.1f} ms of operator time per step")
    for name, ms in spent.items():
        print(f"  {name}: {ms:.1f} ms ({ms / total:.0%})")
    dtype = AUTOCAST_DTYPES.get(runtime.precision, torch.float32)
    peak = matmul_peak_flops(torch.device("cpu"), dtype)
    if family == "cnn":
        # The profiler counts no FLOPs in convolution backward, so no ceiling for CNNs. (A
        # ViT's patch embedding is a convolution too, but a negligible share of its FLOPs.)
        print(f"  {key[0]} matmul peak {peak / 1e9:.0f} GFLOP/s")
        return
    flops = sum(e.flops for e in events if e.key in MATMULS and e.flops) / 10
    matmul_ms = step_ms * spent["matrix products and convolutions"] / total
    at_peak = flops / peak * 1e3
    ceiling = step_ms - matmul_ms + at_peak
    print(f"  matrix products: {flops / 1e9:.1f} GFLOP per step at "
          f"{flops / matmul_ms / 1e6:.0f} GFLOP/s; {key[0]} matmul peak "
          f"{peak / 1e9:.0f} GFLOP/s")  # fmt: skip
    print(f"  with every matrix product at that peak: {ceiling:.1f} ms per step instead of "
          f"{step_ms:.1f}, {batch_size / ceiling * 1e3:.0f} img/s instead of "
          f"{rate:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
