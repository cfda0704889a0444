"""Train the demo VLM (a small OpenCLIP config shipped in the package) on image/prompt pairs.

This stands in for a real pretrained VLM offline: it is trained contrastively so that its
zero-shot classifier (prompts in, class out) is well above chance on the synthetic data.
The result is saved as an ordinary OpenCLIP checkpoint and loaded back through the same
local-file path users take with real weights.
"""

from __future__ import annotations

import random
from pathlib import Path

import torch
import torch.nn.functional as F

from dait_edge.vlm.loader import BUILTIN_CONFIG_DIR

DEMO_VLM_CONFIG = BUILTIN_CONFIG_DIR / "dait_demo_clip.json"
TRAIN_TEMPLATES = ("a photo of a {}.", "a {}.", "a picture of a {}, a bird.", "a close-up photo of a {}.")


def train_demo_vlm(
    dataset,
    out_file: str | Path,
    epochs: int = 12,
    batch_size: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Contrastive training (InfoNCE of each image against every class prompt); returns the checkpoint."""
    import open_clip
    from safetensors.torch import save_file
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from dait_edge.data.images import ImageListDataset
    from dait_edge.utils.io import atomic_path

    torch.manual_seed(seed)
    rng = random.Random(seed)
    open_clip.add_model_config(DEMO_VLM_CONFIG)
    model, preprocess_train, _ = open_clip.create_model_and_transforms(DEMO_VLM_CONFIG.stem, pretrained=None)
    tokenizer = open_clip.get_tokenizer(DEMO_VLM_CONFIG.stem)
    loader = DataLoader(
        ImageListDataset(dataset.split("train"), transform=preprocess_train, crop_bottom=dataset.crop_bottom),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    optimiser = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=2e-3, total_steps=epochs * len(loader))
    model.train()
    bar = tqdm(total=epochs * len(loader), desc="train demo VLM", disable=not progress, unit="step")
    for _ in range(epochs):
        for images, labels, _ in loader:
            template = rng.choice(TRAIN_TEMPLATES)
            tokens = tokenizer([template.format(name) for name in dataset.classes])
            image_emb = F.normalize(model.encode_image(images), dim=-1)
            text_emb = F.normalize(model.encode_text(tokens), dim=-1)
            logits = model.logit_scale.exp() * image_emb @ text_emb.t()
            loss = F.cross_entropy(logits, labels)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
            bar.update()
    bar.close()
    out_file = Path(out_file)
    with atomic_path(out_file) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    return out_file
