"""Common corruptions on batched tensors: CIFAR-10-C's definitions in torch, plus occlusion and
patch shuffling.

The eight CIFAR-10-C corruptions follow Hendrycks & Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations" (ICLR 2019), with the severity constants of
the authors' generator (github.com/hendrycks/robustness, ImageNet-C/create_c/make_cifar_c.py):
the same noise scales, blur sigmas, contrast and brightness factors, JPEG qualities and pixelate
ratios. They act on float images in [0, 1], shape (B, 3, H, W), on any device. Randomness comes
from a CPU `torch.Generator`, so a seed gives the same corrupted images everywhere. JPEG goes
through Pillow's encoder per image (a real codec, as in the original); pixelate applies Pillow's
BOX resampling weights as matrices, so it runs batched. Occlusion and patch shuffling are the
PatchDrop and shuffle probes of Naseer et al., "Intriguing Properties of Vision Transformers"
(NeurIPS 2021): random grid cells set to black, and grid cells permuted.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

Corruption = Callable[[torch.Tensor, int, torch.Generator], torch.Tensor]

# make_cifar_c.py's constants, indexed by severity - 1.
GAUSSIAN_NOISE_STD = (0.04, 0.06, 0.08, 0.09, 0.10)
SHOT_NOISE_PHOTONS = (500, 250, 100, 75, 50)
IMPULSE_NOISE_AMOUNT = (0.01, 0.02, 0.03, 0.05, 0.07)
GAUSSIAN_BLUR_SIGMA = (0.4, 0.6, 0.7, 0.8, 1.0)
CONTRAST_FACTOR = (0.75, 0.5, 0.4, 0.3, 0.15)
BRIGHTNESS_SHIFT = (0.05, 0.1, 0.15, 0.2, 0.3)
JPEG_QUALITY = (80, 65, 58, 50, 40)
PIXELATE_RATIO = (0.95, 0.9, 0.85, 0.75, 0.65)
# Beyond CIFAR-10-C: the share of the image occluded, and the shuffle grid (cells per side).
OCCLUSION_FRACTION = (0.15, 0.3, 0.45, 0.6, 0.75)
OCCLUSION_GRID = 8  # cells per side: 4-pixel cells at 32 px
SHUFFLE_GRID = (2, 4)


def _noise_like(x: torch.Tensor, generator: torch.Generator, kind: str = "normal") -> torch.Tensor:
    """Noise drawn on the CPU from `generator` (same numbers on every device), moved to x's."""
    shape = tuple(x.shape)
    sample = (
        torch.randn(shape, generator=generator)
        if kind == "normal"
        else torch.rand(shape, generator=generator)
    )
    return sample.to(x.device, x.dtype)


def gaussian_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Additive N(0, c^2) noise per pixel and channel."""
    c = GAUSSIAN_NOISE_STD[severity - 1]
    return (x + c * _noise_like(x, generator)).clamp(0, 1)


def shot_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Poisson photon noise: Poisson(x * c) / c, fewer photons at higher severity."""
    c = SHOT_NOISE_PHOTONS[severity - 1]
    counts = torch.poisson((x.detach().float().cpu() * c), generator=generator)
    return (counts / c).clamp(0, 1).to(x.device, x.dtype)


def impulse_noise(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Salt and pepper: a share c of pixel values set to 0 or 1 with equal odds (skimage's s&p)."""
    c = IMPULSE_NOISE_AMOUNT[severity - 1]
    flipped = _noise_like(x, generator, "uniform") <= c
    salted = _noise_like(x, generator, "uniform") <= 0.5
    out = torch.where(flipped & salted, torch.ones_like(x), x)
    return torch.where(flipped & ~salted, torch.zeros_like(x), out)


def gaussian_kernel1d(sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """skimage.filters.gaussian's kernel: radius round(truncate * sigma), weights summing to 1."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).float()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur per channel, edges replicated (skimage's default mode 'nearest')."""
    kernel = gaussian_kernel1d(sigma).to(x.device, x.dtype)
    radius = (len(kernel) - 1) // 2
    channels = x.shape[1]
    out = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


def gaussian_blur(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Gaussian blur with sigma c pixels."""
    return blur(x, GAUSSIAN_BLUR_SIGMA[severity - 1]).clamp(0, 1)


def contrast(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Pull every pixel towards its image's per-channel mean by a factor c."""
    c = CONTRAST_FACTOR[severity - 1]
    means = x.mean(dim=(2, 3), keepdim=True)
    return ((x - means) * c + means).clamp(0, 1)


def brightness(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Add c to HSV value, clipped at 1, keeping hue and saturation.

    With hue and saturation fixed, every RGB channel is proportional to V = max(R, G, B), so the
    HSV round trip of the original is a rescaling by min(V + c, 1) / V; a black pixel (V = 0,
    saturation 0 by convention) becomes grey at c.
    """
    c = BRIGHTNESS_SHIFT[severity - 1]
    value = x.amax(dim=1, keepdim=True)
    scale = (value + c).clamp(max=1) / value.clamp(min=1e-12)
    return torch.where(value > 0, x * scale, torch.full_like(x, c)).clamp(0, 1)


def jpeg(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Encode and decode each image with Pillow's JPEG codec at quality c."""
    quality = JPEG_QUALITY[severity - 1]
    pixels = (x.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
    out = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        buffer.seek(0)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    decoded = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2)
    return (decoded.float() / 255).to(x.device, x.dtype)


def box_resize_matrix(in_size: int, out_size: int) -> torch.Tensor:
    """(out_size, in_size) weights of Pillow's BOX resampling along one axis (Resample.c).

    Output pixel i covers input coordinates centre +- support, centre = (i + 0.5) * scale;
    the box filter is sampled at input pixel centres and the weights normalised to sum to 1.
    """
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 0.5 * filter_scale
    weights = torch.zeros(out_size, in_size, dtype=torch.float64)
    for i in range(out_size):
        centre = (i + 0.5) * scale
        low = max(int(centre - support + 0.5), 0)
        high = min(int(centre + support + 0.5), in_size)
        for j in range(low, high):
            t = (j - centre + 0.5) / filter_scale
            weights[i, j] = 1.0 if -0.5 < t <= 0.5 else 0.0
        weights[i] /= weights[i].sum()
    return weights.float()


def pixelate(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """BOX-downsample to a share c of the side, then BOX-upsample back (as Pillow does)."""
    height, width = x.shape[-2:]
    c = PIXELATE_RATIO[severity - 1]
    small_h, small_w = int(height * c), int(width * c)
    down_h, down_w = box_resize_matrix(height, small_h), box_resize_matrix(width, small_w)
    up_h, up_w = box_resize_matrix(small_h, height), box_resize_matrix(small_w, width)
    rows = (up_h @ down_h).to(x.device, x.dtype)  # (H, H): down then up, composed
    cols = (up_w @ down_w).to(x.device, x.dtype)
    return (rows @ x @ cols.T).clamp(0, 1)


def _grid_cells(size: int, grid: int) -> list[tuple[int, int]]:
    """Start and end of each of `grid` nearly equal cells along a side of `size` pixels."""
    edges = [round(k * size / grid) for k in range(grid + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def occlusion(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Black out a random share of an 8x8 grid of cells per image (PatchDrop, Naseer et al.)."""
    fraction = OCCLUSION_FRACTION[severity - 1]
    cells = OCCLUSION_GRID * OCCLUSION_GRID
    dropped = round(fraction * cells)
    keep = torch.ones(x.shape[0], OCCLUSION_GRID, OCCLUSION_GRID)
    for b in range(x.shape[0]):
        index = torch.randperm(cells, generator=generator)[:dropped]
        keep[b].view(-1)[index] = 0.0
    # Nearest upsampling of the cell mask to pixels, cell edges as _grid_cells puts them.
    rows = torch.tensor(_cell_of_pixel(x.shape[-2], OCCLUSION_GRID))
    cols = torch.tensor(_cell_of_pixel(x.shape[-1], OCCLUSION_GRID))
    mask = keep[:, rows][:, :, cols].unsqueeze(1).to(x.device, x.dtype)
    return x * mask


def _cell_of_pixel(size: int, grid: int) -> list[int]:
    return [k for k, (start, end) in enumerate(_grid_cells(size, grid)) for _ in range(start, end)]


def patch_shuffle(x: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
    """Cut each image into a g x g grid (g = 2, then 4) and permute the cells at random.

    The side must divide by g so that all cells have one shape and any permutation fits.
    """
    grid = SHUFFLE_GRID[severity - 1]
    batch, channels, height, width = x.shape
    if height % grid or width % grid:
        raise ValueError(f"patch shuffle needs an image side divisible by {grid}, not {height}")
    ch, cw = height // grid, width // grid
    # (B, C, g, ch, g, cw) -> (B, g*g, C, ch, cw): one row per cell.
    cells = x.reshape(batch, channels, grid, ch, grid, cw).permute(0, 2, 4, 1, 3, 5)
    cells = cells.reshape(batch, grid * grid, channels, ch, cw)
    order = torch.stack([torch.randperm(grid * grid, generator=generator) for _ in range(batch)])
    cells = cells[torch.arange(batch)[:, None], order.to(x.device)]
    cells = cells.reshape(batch, grid, grid, channels, ch, cw).permute(0, 3, 1, 4, 2, 5)
    return cells.reshape(batch, channels, height, width)


# The CIFAR-10-C set whose mean is the "mean corruption accuracy".
COMMON_CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "gaussian_blur": gaussian_blur,
    "contrast": contrast,
    "brightness": brightness,
    "jpeg": jpeg,
    "pixelate": pixelate,
}
# Structural perturbations, reported beside the common ones but kept out of their mean.
STRUCTURAL: dict[str, Corruption] = {"occlusion": occlusion, "patch_shuffle": patch_shuffle}
SEVERITIES: dict[str, int] = {
    **{name: 5 for name in COMMON_CORRUPTIONS},
    "occlusion": len(OCCLUSION_FRACTION),
    "patch_shuffle": len(SHUFFLE_GRID),
}
# What each severity means, for the report: the constant of that corruption at that level.
SEVERITY_PARAMETER: dict[str, tuple[float, ...]] = {
    "gaussian_noise": GAUSSIAN_NOISE_STD,
    "shot_noise": SHOT_NOISE_PHOTONS,
    "impulse_noise": IMPULSE_NOISE_AMOUNT,
    "gaussian_blur": GAUSSIAN_BLUR_SIGMA,
    "contrast": CONTRAST_FACTOR,
    "brightness": BRIGHTNESS_SHIFT,
    "jpeg": JPEG_QUALITY,
    "pixelate": PIXELATE_RATIO,
    "occlusion": OCCLUSION_FRACTION,
    "patch_shuffle": SHUFFLE_GRID,
}
ALL_CORRUPTIONS: dict[str, Corruption] = {**COMMON_CORRUPTIONS, **STRUCTURAL}


def corrupt(x: torch.Tensor, name: str, severity: int, seed: int = 0) -> torch.Tensor:
    """Apply corruption `name` at `severity` (1-based) to float images in [0, 1], seeded."""
    if name not in ALL_CORRUPTIONS:
        raise KeyError(f"unknown corruption '{name}': one of {', '.join(ALL_CORRUPTIONS)}")
    if not 1 <= severity <= SEVERITIES[name]:
        raise ValueError(f"{name} has severities 1..{SEVERITIES[name]}, not {severity}")
    # One stream per (seed, corruption, severity): results do not depend on what ran before.
    stream = seed * 1_000_003 + list(ALL_CORRUPTIONS).index(name) * 101 + severity
    generator = torch.Generator().manual_seed(stream % (2**63 - 1))
    return ALL_CORRUPTIONS[name](x, severity, generator)


def severity_label(name: str, severity: int) -> str:
    """A short human reading of one level, e.g. 'sigma 0.6' or 'grid 4x4'."""
    value = SEVERITY_PARAMETER[name][severity - 1]
    if name == "patch_shuffle":
        return f"grid {value}x{value}"
    if name == "occlusion":
        return f"{math.floor(100 * value + 0.5)}% occluded"
    return f"{value:g}"
