"""The multi-task MoE for fundus images: one ResNet-50, one TaskHead per task."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor, nn

from medmoe.multitask.constants import IMAGENET_MEAN, IMAGENET_STD, LESIONS, TASKS
from medmoe.multitask.model.backbone import ResNet50
from medmoe.multitask.model.experts import ASPP, ClassificationExpert, SegmentationExpert
from medmoe.multitask.model.heads import HeadOutput, TaskHead
from medmoe.utils.config import config_from_dict, config_to_dict


@dataclass(frozen=True)
class MultiTaskConfig:
    num_experts: int = 3
    dr_classes: int = 5
    dme_classes: int = 3
    lesions: tuple[str, ...] = LESIONS
    tasks: tuple[str, ...] = TASKS  # a subset gives the single-task baselines
    top_p: float = 0.5
    renormalize: bool = True
    warmup_fraction: float = 0.5
    shared_aspp: bool = False  # one ASPP shared by the segmentation experts (cheaper)
    head_width: int = 256
    backbone_width: int = 64  # 64 is ResNet-50; smaller widths for tests
    image_size: tuple[int, int] = (712, 1072)
    # the normalisation the model was trained with (ImageNet's); evaluate and predict apply it
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MultiTaskConfig:
        return config_from_dict(cls, d, what="multitask config")


class MultiTaskMoE(nn.Module):
    def __init__(self, *, config: MultiTaskConfig) -> None:
        super().__init__()
        self.config = config
        self.backbone = ResNet50(width=config.backbone_width)
        hi, lo, w = self.backbone.high_channels, self.backbone.low_channels, config.head_width
        heads = {}
        if "dr" in config.tasks:
            heads["dr"] = TaskHead(
                experts=[
                    ClassificationExpert(high_channels=hi, num_classes=config.dr_classes, width=w)
                    for _ in range(config.num_experts)
                ],
                gate_in=hi,
            )
        if "dme" in config.tasks:
            heads["dme"] = TaskHead(
                experts=[
                    ClassificationExpert(high_channels=hi, num_classes=config.dme_classes, width=w)
                    for _ in range(config.num_experts)
                ],
                gate_in=hi,
            )
        if "seg" in config.tasks:
            shared = ASPP(cin=hi, cout=w) if config.shared_aspp else None
            heads["seg"] = TaskHead(
                experts=[
                    SegmentationExpert(
                        high_channels=hi,
                        low_channels=lo,
                        num_outputs=len(config.lesions),
                        width=w,
                        aspp=shared,
                    )
                    for _ in range(config.num_experts)
                ],
                gate_in=hi,
            )
        self.heads = nn.ModuleDict(heads)

    def forward(
        self, images: Tensor, *, dense: bool = False, tasks: tuple[str, ...] | None = None
    ) -> dict[str, HeadOutput]:
        """``images`` ``(B, 3, H, W)`` -> per task a HeadOutput; seg logits are upsampled to H x W."""
        low, high = self.backbone(images)
        pooled = high.mean(dim=(2, 3))
        out = {}
        for name in tasks or tuple(self.heads):
            h = self.heads[name](
                low,
                high,
                pooled,
                dense=dense,
                p=self.config.top_p,
                renormalize=self.config.renormalize,
            )
            if name == "seg":
                h = h._replace(
                    output=F.interpolate(
                        h.output, size=images.shape[-2:], mode="bilinear", align_corners=False
                    )
                )
            out[name] = h
        return out
