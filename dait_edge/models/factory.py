"""One factory for students and intermediate teachers: a registered name or alias, or any timm name.

The registry (`zoo`, filled by decorators) says which builder an entry uses; `builders` builds it.
"""

from __future__ import annotations

import difflib
import os

from dait_edge.errors import UserError
from dait_edge.models import zoo  # noqa: F401  (fills the registries)
from dait_edge.models.builders import ClassifierWithFeatures, build_timm
from dait_edge.models.registry import STUDENTS, TEACHERS
from dait_edge.registry import Registry

ROLES = ("student", "teacher")


def build_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    role: str = "student",
) -> ClassifierWithFeatures:
    """Build a registered student/teacher (name or alias) or any timm model by name.

    `weights` (a local .safetensors/.pt/.pth/.bin file) wins over `pretrained`; otherwise
    `pretrained=True` fetches ImageNet weights through timm/torchvision (hub cache first).
    `role` only picks which registry is searched first and which CLI flag errors point to.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    registries = (STUDENTS, TEACHERS) if role == "student" else (TEACHERS, STUDENTS)
    kwargs = {"pretrained": pretrained, "weights": weights, "role": role}
    for registry in registries:
        if name in registry:
            return registry.get(name)(num_classes, **kwargs)

    import timm

    if timm.is_model(name):
        return build_timm(name, num_classes, **kwargs)
    raise UserError(_unknown_message(name, role, registries[0]))


def resolve_model_name(name: str, role: str = "student") -> str:
    """The name a model is filed under: a registered entry's canonical name (aliases resolved), else the
    timm name itself. Unknown names are a UserError with close matches."""
    registries = (STUDENTS, TEACHERS) if role == "student" else (TEACHERS, STUDENTS)
    for registry in registries:
        if name in registry:
            return registry.resolve(name)
    check_model_name(name, role)
    return name


def check_model_name(name: str, role: str = "student") -> None:
    """Fail early (before hours of stage 1) on a name no factory knows."""
    registries = (STUDENTS, TEACHERS) if role == "student" else (TEACHERS, STUDENTS)
    if any(name in registry for registry in registries):
        return
    import timm

    if not timm.is_model(name):
        raise UserError(_unknown_message(name, role, registries[0]))


def _unknown_message(name: str, role: str, registry: Registry) -> str:
    known = [*registry, *(a for n in registry for a in registry.aliases_of(n))]
    close = difflib.get_close_matches(name, known, n=3)
    if not close:
        import timm

        close = difflib.get_close_matches(name, timm.list_models(), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return (
        f"unknown {role} {name!r}.{hint} Run `dait-edge list {role}s` to see the choices "
        "(any timm model name also works)."
    )
