"""Prompt templates for the VLM's text side (VL2Lite's, per dataset; method.md)."""

from __future__ import annotations

GENERIC_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)

# Several phrasings of one class (from CLIP's ImageNet prompt ensemble): BorLan's class Gaussians are the
# spread of a class's embedding over templates, so one template alone would give zero variance.
ENSEMBLE_TEMPLATES: tuple[str, ...] = (
    "a photo of a {}.",
    "a bad photo of a {}.",
    "a close-up photo of a {}.",
    "a bright photo of a {}.",
    "a cropped photo of the {}.",
    "a good photo of the {}.",
    "a photo of the small {}.",
    "a photo of the large {}.",
)


def render_prompts(classname: str, templates: tuple[str, ...] | list[str]) -> list[str]:
    """One prompt per template. A template must hold exactly one `{}` for the class name."""
    from dait_edge.records.config import check_prompt_template

    prompts = []
    for template in templates:
        check_prompt_template(template)
        prompts.append(template.format(classname))
    return prompts
