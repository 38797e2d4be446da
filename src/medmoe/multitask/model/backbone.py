"""ResNet-50 with output stride 16, written here with torchvision's parameter names.

torchvision has no CPU build in this project's environment, so the backbone is written by hand;
its state-dict keys and shapes are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ...,
``layer1.0.downsample.0/1``, ``fc``), so an ImageNet checkpoint (``resnet50-*.pth``) loads
strictly from a local file with ``weights_only=True``. The last stage replaces its stride with
dilation 2 (torchvision's ``replace_stride_with_dilation=[False, False, True]``), the usual
DeepLabV3+ setting, so the deepest features are at 1/16 of the input.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor, nn

from medmoe.errors import CheckpointError, first_line


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self,
        *,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet50(nn.Module):
    """Returns ``(low, high)``: layer1 features (256 ch, 1/4) and layer4 features (2048 ch, 1/16)."""

    layers_cfg = (3, 4, 6, 3)

    def __init__(self, *, num_classes: int = 1000, width: int = 64) -> None:
        super().__init__()
        self.inplanes = width
        self.dilation = 1
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = self._make_layer(width, self.layers_cfg[0])
        self.layer2 = self._make_layer(width * 2, self.layers_cfg[1], stride=2)
        self.layer3 = self._make_layer(width * 4, self.layers_cfg[2], stride=2)
        self.layer4 = self._make_layer(width * 8, self.layers_cfg[3], stride=2, dilate=True)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(
            width * 8 * 4, num_classes
        )  # kept so ImageNet checkpoints load strictly
        self.low_channels, self.high_channels = width * 4, width * 32

    def _make_layer(
        self, planes: int, blocks: int, *, stride: int = 1, dilate: bool = False
    ) -> nn.Sequential:
        previous = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        layers = [
            Bottleneck(
                inplanes=self.inplanes,
                planes=planes,
                stride=stride,
                dilation=previous,
                downsample=downsample,
            )
        ]
        self.inplanes = planes * 4
        layers += [
            Bottleneck(inplanes=self.inplanes, planes=planes, dilation=self.dilation)
            for _ in range(1, blocks)
        ]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        low = self.layer1(x)
        high = self.layer4(self.layer3(self.layer2(low)))
        return low, high


def load_torchvision_resnet50(model: ResNet50, path: str | os.PathLike) -> None:
    """Strictly load a torchvision ResNet-50 state dict from a local file (``weights_only``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        first = first_line(err)
        raise CheckpointError(f"cannot read ResNet-50 weights {path}: {first}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = (str(err).strip().splitlines() or ["mismatch"])[0]
        raise CheckpointError(
            f"{path} is not a torchvision ResNet-50 state dict: {first}"
        ) from None
