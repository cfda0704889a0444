"""Fetch every pretrained weight dait-edge uses into the local caches, on a machine with network.

Offline sites run this once on a networked machine, then copy the caches (HF hub cache, torch
hub cache) or the files written to --out to the offline machine:

    python tools/prefetch_weights.py --out weights/          # students, teachers and the default VLM
    python tools/prefetch_weights.py --skip-vlm              # the small models only

The files in --out can then be passed as --student-weights / --teacher-weights / --vlm-pretrained.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, help="Also save each model's weights here as .safetensors.")
    parser.add_argument("--vlm", default=None, help="OpenCLIP model name (default: the dait-edge default).")
    parser.add_argument("--vlm-pretrained", default=None, help="OpenCLIP pretrained tag.")
    parser.add_argument("--skip-vlm", action="store_true", help="Do not fetch the (4.6 GB) VLM.")
    args = parser.parse_args()

    from safetensors.torch import save_file

    from dait_edge.models import STUDENTS, TEACHERS, build_model
    from dait_edge.vlm import DEFAULT_VLM, DEFAULT_VLM_PRETRAINED

    def save(name: str, module) -> None:
        if args.out:
            args.out.mkdir(parents=True, exist_ok=True)
            state = {k: v.contiguous() for k, v in module.state_dict().items()}
            save_file(state, str(args.out / f"{name}.safetensors"))
            print(f"  saved {args.out / f'{name}.safetensors'}")

    for registry, role in ((STUDENTS, "student"), (TEACHERS, "teacher")):
        for name in registry:
            print(f"{role} {name}: fetching ImageNet weights")
            model = build_model(name, num_classes=1000, pretrained=True, role=role)
            save(name, model.model)

    if not args.skip_vlm:
        import open_clip

        vlm = args.vlm or DEFAULT_VLM
        tag = args.vlm_pretrained or DEFAULT_VLM_PRETRAINED
        print(f"VLM {vlm} / {tag}: fetching (several GB)")
        model, _, _ = open_clip.create_model_and_transforms(vlm, pretrained=tag)
        save(f"{vlm}-{tag}", model)


if __name__ == "__main__":
    main()
