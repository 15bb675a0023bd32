"""Benchmark (by hand, not a test): convlens.quality on live torch models vs torchconvquality
0.3's measure_quality and WeightWatcher's analyze, and the per-epoch Monitor vs a CIFAR-10
ResNet-18 training epoch on this machine.

    python bench/python/bench_quality.py [--runs N] [--no-ww] [--train-iters K]

Needs: convlens (the wheel), torch, torchvision, torchconvquality==0.3.0, weightwatcher.
Prints a markdown table for BENCHMARKS.md.
"""

import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import convlens


def best(f, runs):
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        out = f()
        ts.append(time.perf_counter() - t)
    return min(ts), out


class Block(nn.Module):
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
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet18(nn.Module):
    """The usual CIFAR-10 ResNet-18 (3×3 stem, 64-128-256-512, 11.2 M parameters)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, cin = [], 64
        for cout, s in [(64, 1), (128, 2), (256, 2), (512, 2)]:
            for i in range(2):
                layers.append(Block(cin, cout, s if i == 0 else 1))
                cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, 10)

    def forward(self, x):
        out = self.layers(F.relu(self.bn1(self.conv1(x))))
        return self.fc(F.adaptive_avg_pool2d(out, 1).flatten(1))


def compare_tcq(model, q):
    """Largest difference between torchconvquality's and convlens' tcq metrics per layer."""
    from torchconvquality import measure_quality

    ref = measure_quality(model)
    rows = {r["layer"]: r for _, r in q.layers.iterrows()}
    worst = 0.0
    n = 0
    for name, m in ref.items():
        r = rows.get(name)
        if r is None:
            continue
        for k_ref, k_ours in [
            ("sparsity", "tcq_sparsity"),
            ("variance_entropy", "tcq_variance_entropy"),
            ("variance_entropy_clean", "tcq_variance_entropy_clean"),
        ]:
            a, b = float(m[k_ref]), float(r[k_ours])
            if math.isnan(a) and math.isnan(b):
                continue
            worst = max(worst, abs(a - b))
        n += 1
    return n, worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-ww", action="store_true")
    ap.add_argument("--train-iters", type=int, default=5)
    args = ap.parse_args()
    import torchvision
    from torchconvquality import measure_quality

    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, convlens {convlens.__version__}\n")
    print("| model | 3×3 layers | convlens.quality (s) | torchconvquality (s) | speed-up | max abs diff tcq metrics | WeightWatcher analyze (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, ctor in [("resnet18", torchvision.models.resnet18), ("wide_resnet50_2", torchvision.models.wide_resnet50_2)]:
        model = ctor(weights=None).eval()
        convlens.quality(model)  # warm-up
        t_cl, q = best(lambda: convlens.quality(model), args.runs)
        t_tcq, _ = best(lambda: measure_quality(model), max(1, min(args.runs, 2)))
        n, worst = compare_tcq(model, q)
        t_ww = float("nan")
        if not args.no_ww:
            try:
                import weightwatcher as ww

                t_ww, _ = best(lambda: ww.WeightWatcher(model=model).analyze(), 1)
            except Exception as e:  # noqa: BLE001
                print(f"(weightwatcher failed: {e})")
        print(f"| {name} | {n} | {t_cl:.3f} | {t_tcq:.2f} | {t_tcq / t_cl:.0f}× | {worst:.1e} | {t_ww:.1f} |")

    # per-epoch monitor vs a CIFAR-10 ResNet-18 training epoch (391 iterations of batch 128)
    model = CifarResNet18()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(128, 3, 32, 32)
    y = torch.randint(0, 10, (128,))
    model.train()

    def it():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()

    it()
    t = time.perf_counter()
    for _ in range(args.train_iters):
        it()
    per_iter = (time.perf_counter() - t) / args.train_iters
    epoch = per_iter * 391
    mon = convlens.Monitor(model)
    mon.step(epoch=0)
    t_mon, _ = best(lambda: mon.step(epoch=1), args.runs)
    print()
    print("| CIFAR-10 ResNet-18 | seconds |")
    print("|---|---|")
    print(f"| one training iteration (batch 128, measured over {args.train_iters}) | {per_iter:.2f} |")
    print(f"| one epoch (391 iterations, extrapolated) | {epoch:.0f} |")
    print(f"| Monitor.step (per-layer + depth-group quality) | {t_mon:.3f} |")
    print(f"| monitor share of an epoch | {100 * t_mon / epoch:.3f} % |")


if __name__ == "__main__":
    main()
