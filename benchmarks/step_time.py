"""Training step time of one preset in each precision and memory format, interleaved.

    python benchmarks/step_time.py resnet-micro --threads 2

Builds one model per setting (fp32/bf16 x contiguous/channels_last; the ViTs have no
channels_last), then times 10 training steps (forward, backward, AdamW) of a random batch of 64
32-px images per setting in turn, 6 rounds, the first discarded as warm-up. Prints the median
images/s per setting and every round's figure. Settings alternate within a round, so a drift in
the machine hits all of them alike. It answers one question: which precision and layout trains
a preset fastest on this machine (the fast path's choice, runtime.py).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from cnnvit.models import PRESETS, build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("preset", choices=sorted(PRESETS))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    family = PRESETS[args.preset].family
    x = torch.randn(args.batch_size, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    y = torch.arange(args.batch_size) % 10
    settings = {}
    for precision in ("fp32", "bf16"):
        for layout in ("contiguous", "channels_last"):
            if family == "vit" and layout == "channels_last":
                continue
            model = build_model(args.preset, family, [str(i) for i in range(10)], 32).model
            if layout == "channels_last":
                model = model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
            settings[(precision, layout)] = (model.train(), optimizer)

    def step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, key: tuple) -> None:
        precision, layout = key
        inputs = x.contiguous(memory_format=torch.channels_last) if layout != "contiguous" else x
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            logits = model(pixel_values=inputs).logits.float()
        F.cross_entropy(logits, y).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    rates: dict[tuple, list[float]] = {key: [] for key in settings}
    for round_number in range(args.rounds):
        for key, (model, optimizer) in settings.items():
            step(model, optimizer, key)
            start = time.perf_counter()
            for _ in range(10):
                step(model, optimizer, key)
            if round_number:  # the first round warms up every setting
                rates[key].append(10 * args.batch_size / (time.perf_counter() - start))
    for (precision, layout), values in rates.items():
        print(f"{args.preset} {precision} {layout}: {statistics.median(values):.0f} img/s "
              f"(rounds: {', '.join(f'{v:.0f}' for v in values)})")  # fmt: skip


if __name__ == "__main__":
    main()
