"""The paper's image networks as bodies (inputs → pooled embedding); the loss's head goes on top.

Image inputs arrive as (B, C, H, W) with values 0–255 (uint8 in training, where the batch is
augmented on the device as bytes; float when served). ``ScaleToSymmetric`` is every body's first
layer and maps them to [−1, 1], the paper's scaling.

- ResNet-20 v1 for CIFAR (He et al. 2016, as in the Keras CIFAR-10 example the paper's code follows):
  3×3 conv, three stages of ``depth`` = 6n + 2 → n basic blocks at 16 / 32 / 64 channels, global
  average pooling. Shortcuts are identities except where the shape changes, where they are 1×1
  strided convolutions without batch norm (the Keras example's projection; He et al.'s "option B").
- WRN-28-10 (Zagoruyko & Komodakis 2016): pre-activation basic blocks, widths 16·k / 32·k / 64·k,
  dropout 0, BN-ReLU before global pooling.
- ResNet-50 v1.5 is torchvision's architecture (``weights=None``) with its last layer removed.

``width`` and ``depth`` (and ``widen`` for the WRN) come from the config, so tests build tiny
versions of the same code.
"""

from __future__ import annotations

import torch
from torch import nn


class ScaleToSymmetric(nn.Module):
    """0–255 → [−1, 1] (x / 127.5 − 1), as float32."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float() / 127.5 - 1.0


class BasicBlockV1(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1, stride)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNetV1(nn.Module):
    """CIFAR ResNet v1 of depth 6n + 2 (ResNet-20: n = 3, width 16) → embedding (B, 4·width)."""

    def __init__(self, in_channels: int = 3, depth: int = 20, width: int = 16):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"ResNet v1 depth must be 6n + 2 (20, 32, 44, …), got {depth}")
        blocks = (depth - 2) // 6
        layers: list[nn.Module] = [
            ScaleToSymmetric(),
            nn.Conv2d(in_channels, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        channels = width
        for stage, out_channels in enumerate((width, 2 * width, 4 * width)):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(BasicBlockV1(channels, out_channels, stride))
                channels = out_channels
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.layers = nn.Sequential(*layers)
        self.embedding_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)  # (B, 4·width)


class PreActBlock(nn.Module):
    """WRN block: BN-ReLU-conv-BN-ReLU-conv plus the shortcut (a 1×1 conv when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.project = stride != 1 or in_channels != out_channels
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, bias=False) if self.project else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(x))
        out = self.conv1(activated)
        out = self.conv2(torch.relu(self.bn2(out)))  # dropout 0: none in between
        return out + self.shortcut(activated if self.project else x)


class WideResNet(nn.Module):
    """WRN-depth-widen (pre-activation) → embedding (B, 64·widen·width/16)."""

    def __init__(self, in_channels: int = 3, depth: int = 28, widen: int = 10, width: int = 16):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n + 4 (16, 22, 28, …), got {depth}")
        blocks = (depth - 4) // 6
        layers: list[nn.Module] = [ScaleToSymmetric(), nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)]
        channels = width
        for stage, out_channels in enumerate((width * widen, 2 * width * widen, 4 * width * widen)):
            for block in range(blocks):
                layers.append(PreActBlock(channels, out_channels, 2 if stage > 0 and block == 0 else 1))
                channels = out_channels
        layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.layers = nn.Sequential(*layers)
        self.embedding_dim = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ResNet50(nn.Module):
    """torchvision's ResNet-50 (v1.5: stride 2 in the 3×3 convs), untrained, without its last layer."""

    def __init__(self, width: int = 64):
        super().__init__()
        import torchvision

        # width_per_group scales the bottleneck width; 64 is the standard ResNet-50
        net = torchvision.models.resnet50(weights=None, width_per_group=width)
        self.embedding_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.scale = ScaleToSymmetric()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.scale(x))  # (B, 2048)
