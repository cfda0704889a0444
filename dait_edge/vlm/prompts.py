"""Prompt templates for the VLM's text side (VL2Lite's, per dataset; method.md)."""

from __future__ import annotations

GENERIC_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)


def borlan_templates() -> tuple[str, ...]:
    """BorLan's templates for its class Gaussians: the 80 ImageNet templates (open_clip's
    OPENAI_IMAGENET_TEMPLATES), "This is " put before each that starts with "a" or "the", as
    BIT-DA/BorLan text_features/text_embedding.py does (`use_prefix`; "art of the {}." too)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    templates = (template("{}") for template in OPENAI_IMAGENET_TEMPLATES)
    return tuple(f"This is {t}" if t.startswith(("a", "the")) else t for t in templates)


def render_prompts(classname: str, templates: tuple[str, ...] | list[str]) -> list[str]:
    """One prompt per template. A template must hold exactly one `{}` for the class name."""
    from dait_edge.records.config import check_prompt_template

    prompts = []
    for template in templates:
        check_prompt_template(template)
        prompts.append(template.format(classname))
    return prompts
