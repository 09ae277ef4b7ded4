"""Models the benchmarks share: a CIFAR-size ResNet-20 and a random-weight InceptionV1.

Both run with random weights (nothing is downloaded): speed does not depend on the weights'
values, and featvis and Lucent get the very same state dict.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn

# He et al., "Deep Residual Learning for Image Recognition" (2016), section 4.2: the CIFAR-10
# ResNet-20 has three stages of 3 basic blocks with 16, 32 and 64 channels on 32 px inputs.
RESNET20_STAGES = (16, 32, 64)
RESNET20_BLOCKS = 3


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        # Projection shortcut when the shape changes (the paper's option B).
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """CIFAR ResNet-20: ``layer1`` .. ``layer3`` (16, 32, 64 channels), then pooling and ``fc``."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, cin = [], 16
        for i, cout in enumerate(RESNET20_STAGES):
            blocks = [BasicBlock(cin if b == 0 else cout, cout, 2 if (b == 0 and i > 0) else 1)
                      for b in range(RESNET20_BLOCKS)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(x.mean((2, 3)))


def resnet20(seed: int = 0) -> ResNet20:
    """A ResNet-20 with random weights from ``seed``, in eval mode."""
    torch.manual_seed(seed)
    return ResNet20().eval()
