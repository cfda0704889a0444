"""The demo's size, in its own module so the CLI reads its defaults without importing torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoScale:
    """How big the demo is. The default is what `make demo` runs; the tests run it at a few images and
    one epoch, which proves the chain, not the method."""

    # Training images per class, and as many test images (300 test images: 1 image = 0.33 points).
    images_per_class: int = 50
    # Held out of training for validation (10 per class): int8's accuracy budget is judged on images no
    # model trained on; 60 images clear the search's minimum of 50, and 240 remain to train on.
    val_fraction: float = 0.2
    # Stage-2 epochs per student, from scratch. With 12 (and the comparison at two seeds), `make demo` took
    # 8 min 50 s on a 2-core AMD EPYC; alpha reaches 1 halfway, so the second half trains on labels alone,
    # which the small students need (16 epochs, or 12 with an 8-epoch stage 1, ended lower on MobileNet-V2
    # and ShuffleNet-V2, before the cosine schedule).
    epochs: int = 12

    @property
    def stage1_epochs(self) -> int:
        return max(1, self.epochs // 2)

    def check(self) -> None:
        from dait_edge.errors import UserError

        if self.images_per_class < 2:
            raise UserError(
                f"the demo needs at least 2 images per class, not {self.images_per_class}.",
                setting="images_per_class",
            )
        if self.epochs < 1:
            raise UserError(f"the demo needs at least 1 epoch, not {self.epochs}.", setting="epochs")
