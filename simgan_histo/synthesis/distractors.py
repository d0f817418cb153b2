"""The release's two distractor types, blended into the background and labelled background.

- Noise type 2, "smudges": faint, strongly blurred nucleus-like shapes.
- Noise type 1, "speckle": clusters of small spiky stars, semi-transparent.

Both are rimless and paler than nuclei, so they teach "smudge is background", never "pale
nucleus is background" (DESIGN §7). Every pixel step runs on the bounding box of the
shapes (plus the blur reach) only.
"""

import cv2
import numpy as np

from simgan_histo.synthesis import draws
from simgan_histo.synthesis import polygons

SPECKLE_RADIUS = (6.0, 11.0)  # release noise type 1 star radius, px
_SUBPIXEL_BITS = 4  # cv2.fillPoly fixed-point vertices: 1/16 px


def stochastic_round(rng, value: float) -> int:
    """floor(value) + 1 with probability frac(value)."""
    whole = int(np.floor(value))
    return whole + int(draws.chance(rng, value - whole))


def blend(planes: np.ndarray, colour: np.ndarray, alpha: np.ndarray, box, origin: int = 0):
    """planes = planes·(1 − alpha) + colour·alpha inside `box` (x0, y0, x1, y1), in place.

    `alpha` covers exactly the box; box coordinates are those of a larger canvas in which
    `planes` starts at (origin, origin) (the distractors are drawn on the synthesis window,
    the background covers only the patch)."""
    x0, y0, x1, y1 = box
    height, width = planes.shape[1:]
    left, top = max(x0, origin), max(y0, origin)
    right, bottom = min(x1, origin + width), min(y1, origin + height)
    if right <= left or bottom <= top:
        return
    alpha = alpha[top - y0:bottom - y0, left - x0:right - x0]
    keep = 1.0 - alpha
    for channel in range(3):
        region = planes[channel, top - origin:bottom - origin, left - origin:right - origin]
        cv2.multiply(region, keep, dst=region)
        cv2.scaleAdd(alpha, float(colour[channel]), region, dst=region)


def _box(low, high, reach: int, size: int):
    x0, y0 = (max(0, int(v) - reach) for v in low)
    x1, y1 = (min(size, int(v) + reach + 2) for v in high)
    return x0, y0, x1, y1


def _layer(shapes: np.ndarray, size: int, blur: int, opacity: float, on_tissue: np.ndarray):
    """Blurred fill of `shapes` (on tissue only) times `opacity` over the box it covers:
    (alpha of the box, box (x0, y0, x1, y1)), or None when the box is empty."""
    box = _box(shapes.reshape(-1, 2).min(axis=0), shapes.reshape(-1, 2).max(axis=0),
               blur // 2 + 1, size)
    x0, y0, x1, y1 = box
    if x1 <= x0 or y1 <= y0:
        return None
    fill = np.zeros((y1 - y0, x1 - x0), np.uint8)
    scaled = np.round((shapes - np.float32([x0, y0])) * (1 << _SUBPIXEL_BITS)).astype(np.int32)
    for polygon in scaled:  # one call each: several at once would fill even-odd
        cv2.fillPoly(fill, [polygon], 1, lineType=cv2.LINE_8, shift=_SUBPIXEL_BITS)
    alpha = cv2.bitwise_and(fill, on_tissue[y0:y1, x0:x1]).astype(np.float32)
    alpha = cv2.blur(alpha, (blur, blur))
    alpha *= np.float32(opacity)
    return alpha, box


def add_smudges(rng, planes, tile, config, area_scale: float, bias: float,
                on_tissue: np.ndarray, origin: int = 0) -> None:
    """Release noise type 2: faint, strongly blurred nucleus-like shapes, background label.

    Shapes are placed on the canvas of `on_tissue`, in which `planes` starts at `origin`."""
    count = stochastic_round(rng, draws.randint(rng, 0, config.pale_blob_max + 1) * area_scale)
    if count == 0:
        return
    size = on_tissue.shape[0]
    low, high = config.nucleus_radius_range
    radii = (low + (high - low) * rng.random(count)) * bias
    shapes, _ = polygons.scaled_shapes(rng, polygons.shape_bank(config),
                                       rng.random((count, 2)) * size, radii)
    radius = 7 if draws.chance(rng, 0.5) else 9
    layer = _layer(shapes, size, 2 * radius + 1, draws.uniform(rng, 0.3, 0.7), on_tissue)
    percentile = (tile.nuclear_percentile + 35) // 2 - draws.randint(rng, 12, 26)
    if layer is not None:
        blend(planes, tile.colour_by_h[min(max(int(percentile), 0), 99)], *layer, origin)


def add_speckle(rng, planes, tile, config, area_scale: float, on_tissue: np.ndarray,
                origin: int = 0) -> None:
    """Release noise type 1: clusters of small spiky stars, semi-transparent, background
    (placed like `add_smudges`)."""
    count = stochastic_round(rng, draws.randint(rng, 0, config.speckle_max + 1) * area_scale)
    if count == 0:
        return
    size = on_tissue.shape[0]
    clusters = rng.random((draws.randint(rng, 1, 4), 2)) * size
    centers = clusters[(rng.random(count) * len(clusters)).astype(int)]
    centers = (centers + rng.normal(0.0, size / 8.0, (count, 2))).round().astype(np.int64)
    sprites, offsets = polygons.star_sprites(SPECKLE_RADIUS)
    picks = (rng.random(count) * len(sprites)).astype(np.int64)
    corners = centers + offsets[picks]
    reach = 2 * int(np.ceil(2 * SPECKLE_RADIUS[1])) + 3  # widest sprite plus the blur
    x0, y0 = (max(0, int(v) - 2) for v in corners.min(axis=0))
    x1, y1 = (min(size, int(v) + reach) for v in corners.max(axis=0))
    opacity = draws.uniform(rng, 0.1, 0.35) / 255
    percentile = tile.nuclear_percentile - draws.uniform(rng, 10, 30)
    if x1 <= x0 or y1 <= y0:
        return
    stars = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for (x, y), pick in zip((corners - [x0, y0]).tolist(), picks.tolist()):
        sprite = sprites[pick]
        left, top = max(x, 0), max(y, 0)
        right, bottom = min(x + sprite.shape[1], x1 - x0), min(y + sprite.shape[0], y1 - y0)
        if right > left and bottom > top:
            region = stars[top:bottom, left:right]
            cv2.bitwise_or(region, sprite[top - y:bottom - y, left - x:right - x], dst=region)
    # The tissue map is 0/1: as a mask, so alpha keeps the sprites' 0/255 scale (ANDing the
    # two values left alpha at 1/255 of the opacity: an invisible speckle until now).
    alpha = cv2.bitwise_and(stars, stars, mask=on_tissue[y0:y1, x0:x1]).astype(np.float32)
    alpha = cv2.blur(alpha, (3, 3))
    alpha *= np.float32(opacity)
    blend(planes, tile.colour_by_h[min(max(int(percentile), 0), 99)], alpha, (x0, y0, x1, y1),
          origin)
