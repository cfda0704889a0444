"""A small synthetic fine-grained dataset: 'birds' that differ only in small local details.

Every bird has the same body shape and a random body colour; the class is set by two small
cues (crest colour and wing bars), with pose, position, size and background clutter as
nuisances. Written as an ImageFolder tree (train/ and test/) of JPEGs.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

CREST_COLOURS = {"red": (200, 30, 30), "blue": (30, 60, 210), "yellow": (230, 200, 20)}
WING_PATTERNS = ("barred", "plain")
BODY_COLOURS = [(120, 90, 60), (110, 110, 110), (100, 110, 60), (150, 120, 90)]


def class_names() -> list[str]:
    return [f"{crest}-crested {wing} finch" for crest in CREST_COLOURS for wing in WING_PATTERNS]


def draw_bird(crest: str, wing: str, rng: random.Random, size: int = 72) -> Image.Image:
    background = tuple(rng.randint(150, 235) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 7)):  # clutter: twigs and leaves
        x0, y0 = rng.randrange(size), rng.randrange(size)
        colour = tuple(rng.randint(60, 200) for _ in range(3))
        if rng.random() < 0.5:
            draw.line([x0, y0, x0 + rng.randint(-25, 25), y0 + rng.randint(-25, 25)], fill=colour, width=2)
        else:
            draw.ellipse([x0, y0, x0 + rng.randint(3, 8), y0 + rng.randint(3, 8)], fill=colour)
    scale = rng.uniform(0.8, 1.1)
    cx = size / 2 + rng.uniform(-7, 7)
    cy = size / 2 + rng.uniform(-7, 7)
    facing = 1 if rng.random() < 0.5 else -1
    body = rng.choice(BODY_COLOURS)
    bw, bh = 20 * scale, 12 * scale
    draw.ellipse([cx - bw, cy - bh, cx + bw, cy + bh], fill=body)  # body
    hx, hy, hr = cx + facing * 18 * scale, cy - 10 * scale, 7 * scale
    draw.ellipse([hx - hr, hy - hr, hx + hr, hy + hr], fill=body)  # head
    beak_tip = hx + facing * 13 * scale
    draw.polygon(
        [(hx + facing * hr, hy - 2), (beak_tip, hy + 1), (hx + facing * hr, hy + 3)], fill=(60, 50, 40)
    )
    draw.ellipse([hx + facing * 2 - 1.5, hy - 3.5, hx + facing * 2 + 1.5, hy - 0.5], fill=(0, 0, 0))  # eye
    crest_colour = CREST_COLOURS[crest]
    draw.polygon(
        [
            (hx - 4 * scale, hy - hr + 1),
            (hx - facing * 3 * scale, hy - hr - 7 * scale),
            (hx + 4 * scale, hy - hr + 1),
        ],
        fill=crest_colour,
    )
    if wing == "barred":  # two light bars across the wing
        for offset in (-3, 3):
            x = cx - facing * 2 * scale + offset * scale
            draw.line(
                [x, cy - 7 * scale, x - facing * 5 * scale, cy + 6 * scale], fill=(245, 245, 245), width=2
            )
    tail_x = cx - facing * bw
    draw.polygon(
        [(tail_x, cy - 3), (tail_x - facing * 10 * scale, cy - 6), (tail_x - facing * 10 * scale, cy + 4)],
        fill=body,
    )
    return image


FIRST_TEST = 15  # test images per class drawn beside the training images (the first demo's split)


def write_demo_dataset(
    root: str | Path, train_per_class: int = 40, test_per_class: int = 40, seed: int = 0
) -> Path:
    """Write the ImageFolder tree under `root` (idempotent: a complete tree of the same sizes is kept).

    40 test images per class (240 in all): one image is 0.4 top-1 points, fine enough for the default
    1-point accuracy budget of the best-artifact choice (with 15 per class, one flip was already 1.1).
    """
    root = Path(root)
    marker = root / ".complete"
    recipe = f"train {train_per_class} test {test_per_class} seed {seed}\n"
    if marker.is_file() and marker.read_text() == recipe:
        return root
    if root.exists():
        shutil.rmtree(root)  # another size or an interrupted write: start the tree over
    rng = random.Random(seed)
    # Per class: the training images, then the first FIRST_TEST test images; test images past those are
    # drawn after every class's training images, so growing the test split changes no training image
    # (nor the demo VLM and models trained on them).
    plan = []
    for name in class_names():
        plan += [(name, "train", i) for i in range(train_per_class)]
        plan += [(name, "test", i) for i in range(min(test_per_class, FIRST_TEST))]
    for name in class_names():
        plan += [(name, "test", i) for i in range(FIRST_TEST, test_per_class)]
    for name, split, index in plan:
        crest, rest = name.split("-crested ")
        folder = root / split / name
        folder.mkdir(parents=True, exist_ok=True)
        draw_bird(crest, rest.split()[0], rng).save(folder / f"{index:04d}.jpg", quality=92)
    marker.write_text(recipe)  # written last: a killed run regenerates the tree
    return root
