"""Expert modules: depthwise-separable convolutions, ASPP, DeepLabV3+ decoder, task experts."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class SeparableConv(nn.Sequential):
    """Depthwise 3x3 (optionally dilated) then pointwise 1x1, each with BN + ReLU."""

    def __init__(self, *, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=dilation, dilation=dilation, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.ReLU(inplace=True),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling (DeepLabV3+, output stride 16: rates 6, 12, 18)."""

    def __init__(self, *, cin: int, cout: int = 256, rates: tuple[int, ...] = (6, 12, 18)) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
                )
            ]
            + [SeparableConv(cin=cin, cout=cout, dilation=r) for r in rates]
        )
        self.pool = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False), nn.ReLU(inplace=True)
        )
        self.project = nn.Sequential(
            nn.Conv2d(cout * (len(rates) + 2), cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.interpolate(
            self.pool(x), size=x.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.project(torch.cat([b(x) for b in self.branches] + [pooled], dim=1))


class SegmentationExpert(nn.Module):
    """ASPP (own, or shared across experts) + DeepLabV3+ decoder -> ``(B, C, H/4, W/4)`` logits."""

    def __init__(
        self,
        *,
        high_channels: int,
        low_channels: int,
        num_outputs: int,
        width: int = 256,
        aspp: ASPP | None = None,
    ) -> None:
        super().__init__()
        self.aspp = aspp if aspp is not None else ASPP(cin=high_channels, cout=width)
        self.reduce = nn.Sequential(
            nn.Conv2d(low_channels, 48, 1, bias=False), nn.BatchNorm2d(48), nn.ReLU(inplace=True)
        )
        self.fuse = nn.Sequential(
            SeparableConv(cin=width + 48, cout=width), SeparableConv(cin=width, cout=width)
        )
        self.out = nn.Conv2d(width, num_outputs, 1)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        x = F.interpolate(
            self.aspp(high), size=low.shape[-2:], mode="bilinear", align_corners=False
        )
        return self.out(self.fuse(torch.cat([x, self.reduce(low)], dim=1)))


class ClassificationExpert(nn.Module):
    """Adaptive pooling, a depthwise-separable convolution, then an MLP -> class logits."""

    def __init__(
        self, *, high_channels: int, num_classes: int, width: int = 256, pooled: int = 4
    ) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(pooled)
        self.conv = SeparableConv(cin=high_channels, cout=width)
        self.mlp = nn.Sequential(
            nn.Flatten(),
            nn.Linear(width, width),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Linear(width, num_classes),
        )

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        del low
        x = self.conv(self.pool(high))
        return self.mlp(F.adaptive_avg_pool2d(x, 1))
