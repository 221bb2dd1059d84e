"""The embedded default dataset: grey images whose foreground is found by texture and shape, not brightness.

Each image is a sum of layers, all drawn from one seeded generator so a (seed, index) pair always yields
the same picture:

- illumination: a slow linear ramp plus a very smooth field, so the same object is bright in one corner
  and dark in another (no global threshold can follow it);
- background texture: smooth blotches at a scale of a few pixels;
- distractors: background shapes like the foreground ones but untextured and *brighter* or darker than
  anything around them, so "bright = foreground" is wrong;
- foreground: large shapes filled with fine stripes whose mean brightness is within a few percent of the
  local background, thin curvilinear structures, and small ring-like objects;
- a light blur and pixel noise on top.

The mask is the union of the foreground layers. `threshold_iou` in `seg.study.baselines` measures how far a
grey threshold gets (far less than the U-Net): the dataset needs the network.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

Array = np.ndarray


@dataclass(frozen=True, kw_only=True)
class SyntheticStyle:
    """Knobs of the generator. The defaults are the embedded dataset; tests shrink `size`."""

    size: int = 64  # pixels per side
    n_shapes: tuple[int, int] = (1, 3)  # textured foreground shapes per image (inclusive range)
    n_curves: tuple[int, int] = (1, 2)  # thin curvilinear structures
    n_small: tuple[int, int] = (1, 3)  # small objects
    n_distractors: tuple[int, int] = (2, 4)  # bright/dark untextured background shapes
    stripe_period: tuple[float, float] = (3.0, 5.0)  # pixels
    stripe_amplitude: tuple[float, float] = (0.15, 0.25)
    fg_offset: float = 0.06  # |mean foreground - local background| at most this
    distractor_offset: tuple[float, float] = (0.12, 0.3)
    curve_width: tuple[int, int] = (2, 3)  # pixels
    small_radius: tuple[int, int] = (3, 4)  # pixels, of the small ring-like objects
    curve_offset: tuple[float, float] = (0.1, 0.2)  # curves are darker than their surroundings by this
    illumination: float = 0.35  # peak-to-peak of the slow ramp
    noise: float = 0.03  # std of pixel noise
    blur: float = 0.5  # Gaussian sigma of the final blur, pixels
    edge_softness: float = 0.0  # > 0: textured shapes fade in over this Gaussian sigma (px); the mask is alpha >= 0.5


def _smooth_field(rng: np.random.Generator, size: int, sigma: float) -> Array:
    """Zero-mean, unit-peak random field with features of about `sigma` pixels."""
    field = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), sigma)
    field -= field.mean()
    return field / (np.abs(field).max() + 1e-6)


def _random_shape(rng: np.random.Generator, size: int, radius: tuple[float, float]) -> Array:
    """Filled ellipse or irregular polygon, as a uint8 {0,1} map."""
    canvas = np.zeros((size, size), np.uint8)
    cx, cy = rng.uniform(0.1 * size, 0.9 * size, 2)
    r = rng.uniform(*radius)
    if rng.random() < 0.5:
        axes = (max(1, int(r)), max(1, int(r * rng.uniform(0.4, 1.0))))
        cv2.ellipse(canvas, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1, -1)
    else:
        n = rng.integers(5, 9)
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        radii = r * rng.uniform(0.5, 1.0, n)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)
        cv2.fillPoly(canvas, [pts.astype(np.int32)], 1)
    return canvas


def _stripes(rng: np.random.Generator, size: int, style: SyntheticStyle) -> Array:
    """Oriented sinusoidal stripes, zero mean: the texture that marks foreground shapes."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(*style.stripe_period)
    phase = rng.uniform(0, 2 * np.pi)
    wave = np.sin(2 * np.pi * (xx * np.cos(theta) + yy * np.sin(theta)) / period + phase)
    return rng.uniform(*style.stripe_amplitude) * wave


def _curve(rng: np.random.Generator, size: int, width: int) -> Array:
    """A smooth random walk across the image, `width` pixels wide, as a uint8 {0,1} map."""
    canvas = np.zeros((size, size), np.uint8)
    n = 40
    heading = rng.uniform(0, 2 * np.pi)
    turn = np.cumsum(rng.normal(0, 0.25, n))
    step = size / n * rng.uniform(0.8, 1.4)
    xy = np.cumsum(np.stack([np.cos(heading + turn), np.sin(heading + turn)], 1) * step, 0)
    xy += rng.uniform(0.2 * size, 0.8 * size, 2) - xy[n // 2]
    cv2.polylines(canvas, [np.round(xy).astype(np.int32)], False, 1, width)
    return canvas


def _small_object(rng: np.random.Generator, size: int, radius: tuple[int, int]) -> tuple[Array, Array]:
    """A small disc (radius in `radius`, px) with a dark rim and bright core: its mask and its zero-mean pattern."""
    mask = np.zeros((size, size), np.uint8)
    cx, cy = (int(v) for v in rng.uniform(3, size - 3, 2))
    r = int(rng.integers(radius[0], radius[1] + 1))
    cv2.circle(mask, (cx, cy), r, 1, -1)
    core = np.zeros((size, size), np.uint8)
    cv2.circle(core, (cx, cy), max(1, r - 1), 1, -1)
    pattern = 0.25 * core.astype(np.float32) - 0.25 * (mask - core).astype(np.float32)
    return mask, pattern


def soft_paste(image: Array, content: Array, shape: Array, sigma: float) -> Array:
    """Blend `content` into `image` (in place) through a blurred copy of `shape`; return the thresholded alpha.

    The label is where the content weighs at least half: near the edge the pixels are mixtures, so the true
    boundary is ambiguous by about `sigma` px, as in out-of-focus or low-contrast real objects.
    """
    alpha = cv2.GaussianBlur(shape.astype(np.float32), (0, 0), sigma)
    image[:] = (1 - alpha) * image + alpha * content
    return alpha >= 0.5


def generate_sample(seed: int, index: int, style: SyntheticStyle = SyntheticStyle()) -> tuple[Array, Array]:
    """One image and its mask: uint8 (H, W) grey in [0, 255] and uint8 (H, W) in {0, 1}."""
    rng = np.random.default_rng([seed, index])
    s = style.size
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s

    # Slow illumination: ramp in a random direction plus a very smooth field.
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx + np.sin(angle) * yy) - 0.5 * (np.cos(angle) + np.sin(angle))
    light = 0.5 + style.illumination * ramp + 0.1 * _smooth_field(rng, s, s / 4)
    image = light + 0.08 * _smooth_field(rng, s, 1.5)  # background blotches

    def count(bounds: tuple[int, int]) -> int:
        return int(rng.integers(bounds[0], bounds[1] + 1))

    for _ in range(count(style.n_distractors)):
        shape = _random_shape(rng, s, (s * 0.06, s * 0.18)).astype(bool)
        sign = 1.0 if rng.random() < 0.7 else -1.0
        image[shape] += sign * rng.uniform(*style.distractor_offset)

    mask = np.zeros((s, s), np.uint8)
    for _ in range(count(style.n_shapes)):
        shape = _random_shape(rng, s, (s * 0.08, s * 0.22)).astype(bool)
        texture = _stripes(rng, s, style) + rng.uniform(-style.fg_offset, style.fg_offset)
        if style.edge_softness > 0:
            shape = soft_paste(image, light + texture, shape, style.edge_softness)
        else:
            image[shape] = light[shape] + texture[shape]  # the shape hides what was below it
        mask |= shape
    for _ in range(count(style.n_curves)):
        curve = _curve(rng, s, count(style.curve_width)).astype(bool)
        image[curve] -= rng.uniform(*style.curve_offset)
        mask |= curve
    for _ in range(count(style.n_small)):
        small, pattern = _small_object(rng, s, style.small_radius)
        image = np.where(small.astype(bool), light + pattern, image)
        mask |= small

    image = cv2.GaussianBlur(image, (0, 0), style.blur)
    image += rng.normal(0, style.noise, image.shape).astype(np.float32)
    image = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
    return image, mask
