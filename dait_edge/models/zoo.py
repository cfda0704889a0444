"""The registered students and intermediate teachers: one small builder per entry.

Every builder takes `(num_classes, *, pretrained, weights, role)` and returns a
`ClassifierWithFeatures`. Descriptions give GMACs at 224 px and parameters with a 1000-class
head, measured with `dait_edge.models.complexity`. Upstream libraries are imported at build
time only, so listing the zoo stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dait_edge.models.registry import register_student, register_teacher

if TYPE_CHECKING:
    from dait_edge.models.builders import ClassifierWithFeatures


def _timm(name: str, num_classes: int, **kw: Any) -> ClassifierWithFeatures:
    from dait_edge.models.builders import build_timm

    return build_timm(name, num_classes, **kw)


# --- students -------------------------------------------------------------------------------


@register_student("resnet18", "ResNet-18: 1.81 GMACs, 11.7 M params (timm)")
def resnet18(num_classes: int, **kw: Any) -> ClassifierWithFeatures:
    return _timm("resnet18", num_classes, **kw)


@register_student("efficientnet_b0", "EfficientNet-B0: 0.38 GMACs, 5.3 M params (timm)", aliases=("effb0",))
def efficientnet_b0(num_classes: int, **kw: Any) -> ClassifierWithFeatures:
    return _timm("efficientnet_b0", num_classes, **kw)


@register_student(
    "mobilenetv2_100", "MobileNet-V2 1.0: 0.30 GMACs, 3.5 M params (timm)", aliases=("mobilenetv2",)
)
def mobilenetv2_100(num_classes: int, **kw: Any) -> ClassifierWithFeatures:
    return _timm("mobilenetv2_100", num_classes, **kw)


@register_student(
    "shufflenet_v2_x1_0",
    "ShuffleNet-V2 1.0x: 0.14 GMACs, 2.3 M params (torchvision; timm has none)",
    aliases=("shufflenetv2",),
)
def shufflenet_v2_x1_0(num_classes: int, **kw: Any) -> ClassifierWithFeatures:
    from dait_edge.models.builders import build_torchvision_shufflenet

    return build_torchvision_shufflenet("shufflenet_v2_x1_0", num_classes, **kw)


# --- intermediate teachers (the paper's ablation set) ----------------------------------------


@register_teacher("regnety_016", "RegNetY-1.6GF: 1.61 GMACs, 11.2 M params, 888-d features (timm)")
def regnety_016(num_classes: int, **kw: Any) -> ClassifierWithFeatures:
    return _timm("regnety_016", num_classes, **kw)


@register_teacher("resnet50", "ResNet-50: 4.09 GMACs, 25.6 M params (timm)")
def resnet50(num_classes: int, **kw: Any) -> ClassifierWithFeatures:
    return _timm("resnet50", num_classes, **kw)


@register_teacher("resnet34", "ResNet-34: 3.66 GMACs, 21.8 M params (timm)")
def resnet34(num_classes: int, **kw: Any) -> ClassifierWithFeatures:
    return _timm("resnet34", num_classes, **kw)


# The same builder serves as a teacher; registered here so the list keeps the paper's order.
register_teacher("efficientnet_b0", "EfficientNet-B0: 0.38 GMACs, 5.3 M params (timm)", aliases=("effb0",))(
    efficientnet_b0
)


@register_teacher("vgg13", "VGG-13: 11.3 GMACs, 133 M params, 512-ch map, 4096-d pooled (timm)")
def vgg13(num_classes: int, **kw: Any) -> ClassifierWithFeatures:
    return _timm("vgg13", num_classes, **kw)
