"""Prompt templates for the VLM's text side (VL2Lite's, per dataset; method.md)."""

from __future__ import annotations

GENERIC_TEMPLATES: tuple[str, ...] = ("a photo of a {}.",)


def render_prompts(classname: str, templates: tuple[str, ...] | list[str]) -> list[str]:
    """One prompt per template. A template must hold exactly one `{}` for the class name."""
    from dait_edge.errors import UserError

    prompts = []
    for template in templates:
        if template.count("{}") != 1:
            raise UserError(
                f"prompt template {template!r} must contain exactly one '{{}}' where the class name goes."
            )
        prompts.append(template.format(classname))
    return prompts
