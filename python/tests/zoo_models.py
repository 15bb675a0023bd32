"""The five architectures of ../shared/zoo/cifar10-mini as torch modules.

Their state-dict keys and shapes are those of the zoo's checkpoints (``load_state_dict(strict=
True)`` checks it), so a test can rebuild each zoo model as a live ``nn.Module``. The module and
class names ``models.PreActResNet18`` / ``models.PreActBlock`` match the pickled whole module
``preactresnet18_w32_robust_s0.module.pt``, which ``load_pickled_module`` unpickles with them.
"""

import sys
import types

import torch
import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for cout, stride in [(16, 1), (32, 2), (64, 2)]:
            for i in range(3):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


class PreActBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        shortcut = getattr(self, "shortcut", None)
        sc = shortcut(out) if shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + sc


class PreActResNet18(nn.Module):
    def __init__(self, width=32, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        blocks, cin = [], width
        for mult, stride in [(1, 1), (2, 2), (4, 2), (8, 2)]:
            for i in range(2):
                blocks.append(PreActBlock(cin, width * mult, stride if i == 0 else 1))
                cin = width * mult
        self.layers = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.linear = nn.Linear(cin, num_classes)

    def forward(self, x):
        out = self.layers(self.conv1(x))
        out = F.relu(self.bn(out))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


class WideBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.equal = cin == cout
        if not self.equal:
            self.convShortcut = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv2(F.relu(self.bn2(self.conv1(o))))
        return y + (x if self.equal else self.convShortcut(o))


class WRN16_2(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        blocks, cin = [], 16
        for cout, stride in [(32, 1), (64, 2), (128, 2)]:
            for i in range(2):
                blocks.append(WideBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.block = nn.Sequential(*blocks)
        self.bn1 = nn.BatchNorm2d(128)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        out = F.relu(self.bn1(self.block(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


class VGG11(nn.Module):
    def __init__(self, width=16, num_classes=10):
        super().__init__()
        cfg = [1, "M", 2, "M", 4, 4, "M", 8, 8, "M", 8, 8, "M"]
        layers, cin = [], 3
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(cin, width * v, 3, padding=1, bias=False), nn.BatchNorm2d(width * v), nn.ReLU(inplace=True)]
                cin = width * v
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class InvertedResidual(nn.Module):
    def __init__(self, cin, hidden, cout, stride):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers = []
        if hidden != cin:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)]
        layers += [
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2x05(nn.Module):
    # (out, expansion, repeats, stride) at width 0.5, channels rounded to multiples of 8 except
    # the first blocks (as in the zoo's checkpoints)
    SETTINGS = [(8, 1, 1, 1), (12, 6, 2, 1), (16, 6, 3, 2), (32, 6, 4, 2), (48, 6, 3, 1), (80, 6, 3, 2), (160, 6, 1, 1)]

    def __init__(self, num_classes=10):
        super().__init__()
        layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(inplace=True)]
        cin = 16
        for cout, t, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, cin * t, cout, s if i == 0 else 1))
                cin = cout
        layers += [nn.Conv2d(cin, 640, 1, bias=False), nn.BatchNorm2d(640), nn.ReLU6(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(640, num_classes)

    def forward(self, x):
        out = F.adaptive_avg_pool2d(self.features(x), 1).flatten(1)
        return self.classifier(out)


ARCHS = {
    "resnet20": ResNet20,
    "preactresnet18_w32": PreActResNet18,
    "wrn16_2": WRN16_2,
    "vgg11_w16": VGG11,
    "mobilenetv2_x0_5": MobileNetV2x05,
}


def build(arch: str) -> nn.Module:
    return ARCHS[arch]()


def load_pickled_module(path):
    """Unpickles a whole saved module whose classes live in a module called ``models``."""
    shim = types.ModuleType("models")
    shim.PreActResNet18 = PreActResNet18
    shim.PreActBlock = PreActBlock
    old = sys.modules.get("models")
    sys.modules["models"] = shim
    try:
        return torch.load(path, weights_only=False, map_location="cpu")
    finally:
        if old is None:
            del sys.modules["models"]
        else:
            sys.modules["models"] = old
