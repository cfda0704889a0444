"""How each library's models are built and exposed through one interface (`ClassifierWithFeatures`).

Models come from their upstream factories by upstream name (`timm.create_model`,
`torchvision.models.<name>`); `ClassifierWithFeatures` only exposes the pieces distillation
needs (final feature map, pooled features, classifier) through each library's own API. The
registry (`zoo`) names entries; `factory.build_model` picks one. This module knows neither.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from dait_edge.errors import UserError
from dait_edge.models.weights import (
    hf_endpoint,
    hub_access,
    hub_reachable,
    is_download_error,
    load_weights_into,
    offline_error,
    weights_setting,
)
from dait_edge.records.data_config import DataConfig

_DATA_CONFIG_KEYS = ("input_size", "mean", "std", "interpolation", "crop_pct")


class ClassifierWithFeatures(nn.Module):
    """A classifier split into backbone -> pooling -> linear head, whatever library built it.

    `forward_features(x)` gives the final feature map (B, feature_channels, H, W),
    `pool(map)` the pooled features (B, num_features), `classify(pooled)` the logits, and
    `forward_all(x)` all three from one pass. The upstream model is `self.model`.
    """

    source: str = ""

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        num_classes: int,
        feature_channels: int,
        num_features: int,
        data_config: DataConfig,
        weights_from: str,
    ):
        super().__init__()
        self.model = model
        self.name = name
        self.num_classes = num_classes
        self.feature_channels = feature_channels
        self.num_features = num_features
        self.data_config = data_config
        self.weights_from = weights_from  # "imagenet", "random" or the local file, for manifests

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def pool(self, feature_map: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def classifier(self) -> nn.Module:
        """The linear head that maps pooled features to logits."""
        raise NotImplementedError

    def classify(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier()(pooled)

    def drop_classifier(self) -> None:
        """Replace the upstream classifier by an identity (a student whose head is built around it, RISE's,
        keeps no unused weights: DDP would wait for their gradients)."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pool(self.forward_features(x)))

    def forward_all(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feature_map = self.forward_features(x)
        pooled = self.pool(feature_map)
        return {"logits": self.classify(pooled), "feature_map": feature_map, "pooled": pooled}

    def extra_repr(self) -> str:
        return (
            f"name={self.name!r}, source={self.source!r}, num_classes={self.num_classes}, "
            f"feature_channels={self.feature_channels}, num_features={self.num_features}"
        )


class TimmClassifier(ClassifierWithFeatures):
    """timm models: `forward_features` and `forward_head(pre_logits=True)` are timm's own."""

    source = "timm"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def pool(self, feature_map: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(feature_map, pre_logits=True)

    def classifier(self) -> nn.Module:
        return self.model.get_classifier()

    def drop_classifier(self) -> None:
        self.model.reset_classifier(0)


class TorchvisionShuffleNet(ClassifierWithFeatures):
    """torchvision's ShuffleNetV2 family: the map is conv5's output, pooling a global mean."""

    source = "torchvision"

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        for stage in (m.conv1, m.maxpool, m.stage2, m.stage3, m.stage4, m.conv5):
            x = stage(x)
        return x

    def pool(self, feature_map: torch.Tensor) -> torch.Tensor:
        return feature_map.mean((2, 3))

    def classifier(self) -> nn.Module:
        return self.model.fc

    def drop_classifier(self) -> None:
        self.model.fc = nn.Identity()


# --- timm -----------------------------------------------------------------------------------


def build_timm(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    role: str = "student",
) -> TimmClassifier:
    import timm
    from timm.data import resolve_data_config

    if weights is not None:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
        load_weights_into(model, weights, name=name, role=role, head_keys=_timm_head_keys(model))
        weights_from = str(Path(weights))
    elif pretrained:
        model = _timm_pretrained(name, num_classes, role)
        weights_from = "imagenet"
    else:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
        weights_from = "random"
    data_config = resolve_data_config(model=model)
    return TimmClassifier(
        model,
        name=name,
        num_classes=num_classes,
        feature_channels=model.num_features,
        # timm's head_hidden_size is the pooled width when pre_logits adds layers (vgg's ConvMlp)
        num_features=getattr(model, "head_hidden_size", None) or model.num_features,
        data_config=DataConfig.from_dict(
            {k: data_config[k] for k in _DATA_CONFIG_KEYS}, f"timm's data config of {name}"
        ),
        weights_from=weights_from,
    )


def _timm_pretrained(name: str, num_classes: int, role: str) -> nn.Module:
    import timm

    cfg = timm.models.get_pretrained_cfg(name)
    if cfg is None or not cfg.has_weights:
        raise UserError(
            f"timm has no ImageNet weights for {name}: pass a local weights file, or train from scratch"
            " without pretrained weights.",
            setting=(weights_setting(role), "pretrained"),
        )
    online = hub_reachable(hf_endpoint() if cfg.hf_hub_id else (cfg.url or ""))
    try:
        with hub_access(online):
            return timm.create_model(name, pretrained=True, num_classes=num_classes)
    except Exception as err:
        if is_download_error(err):
            raise offline_error(name, role) from err
        raise


def _timm_head_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the classifier, from timm's pretrained cfg (e.g. 'fc', 'head.fc')."""
    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if not names:
        head = model.get_classifier()
        names = [n for n, m in model.named_modules() if m is head and n]
    if isinstance(names, str):
        names = [names]
    return [f"{n}.{p}" for n in names for p in ("weight", "bias")]


# --- torchvision ----------------------------------------------------------------------------


def build_torchvision_shufflenet(
    name: str,
    num_classes: int,
    *,
    pretrained: bool = True,
    weights: str | os.PathLike | None = None,
    role: str = "student",
) -> TorchvisionShuffleNet:
    import torchvision

    factory = getattr(torchvision.models, name)
    if weights is not None:
        model = factory(weights=None, num_classes=num_classes)
        load_weights_into(model, weights, name=name, role=role, head_keys=["fc.weight", "fc.bias"])
        weights_from = str(Path(weights))
    elif pretrained:
        model = _torchvision_pretrained(name, factory, role)
        if model.fc.out_features != num_classes:
            model.fc = nn.Linear(model.fc.in_features, num_classes)
        weights_from = "imagenet"
    else:
        model = factory(weights=None, num_classes=num_classes)
        weights_from = "random"
    return TorchvisionShuffleNet(
        model,
        name=name,
        num_classes=num_classes,
        feature_channels=model.conv5[0].out_channels,
        num_features=model.fc.in_features,
        data_config=DataConfig(
            [3, 224, 224]
        ),  # torchvision's ImageNet recipe: resize 256, crop 224, bilinear
        weights_from=weights_from,
    )


def _torchvision_pretrained(name: str, factory, role: str) -> nn.Module:
    import torchvision

    tv_weights = torchvision.models.get_model_weights(name).DEFAULT
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(tv_weights.url).name
    if not cached.is_file() and not hub_reachable(tv_weights.url):
        raise offline_error(name, role)
    try:
        with hub_access(True):
            return factory(weights=tv_weights)
    except Exception as err:
        if is_download_error(err):
            raise offline_error(name, role) from err
        raise
