#!/usr/bin/env python3
"""Writes a wide_resnet50_2-sized checkpoint (torchvision layout, 68.9 M parameters, ~5 M 3x3
filters) with random Kaiming-normal weights as safetensors (fp32, key_order metadata).

usage: gen_wrn50_2.py OUT.safetensors [--seed 0]
"""
import argparse
import json
from collections import OrderedDict

import numpy as np
from safetensors.numpy import save_file


def build(seed):
    rng = np.random.default_rng(seed)
    sd = OrderedDict()

    def conv(name, o, i, k):
        std = np.sqrt(2.0 / (o * k * k))
        sd[name + ".weight"] = (rng.standard_normal((o, i, k, k)) * std).astype(np.float32)

    def bn(name, c):
        sd[name + ".weight"] = (1 + 0.1 * rng.standard_normal(c)).astype(np.float32)
        sd[name + ".bias"] = (0.1 * rng.standard_normal(c)).astype(np.float32)
        sd[name + ".running_mean"] = (0.1 * rng.standard_normal(c)).astype(np.float32)
        sd[name + ".running_var"] = (1 + 0.1 * rng.random(c)).astype(np.float32)
        sd[name + ".num_batches_tracked"] = np.array(0, dtype=np.int64)

    conv("conv1", 64, 3, 7)
    bn("bn1", 64)
    inplanes = 64
    for li, (planes, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        width = planes * 2  # wide: width_per_group = 128
        for b in range(blocks):
            p = f"layer{li}.{b}"
            conv(p + ".conv1", width, inplanes, 1)
            bn(p + ".bn1", width)
            conv(p + ".conv2", width, width, 3)
            bn(p + ".bn2", width)
            conv(p + ".conv3", planes * 4, width, 1)
            bn(p + ".bn3", planes * 4)
            if b == 0:
                conv(p + ".downsample.0", planes * 4, inplanes, 1)
                bn(p + ".downsample.1", planes * 4)
            inplanes = planes * 4
    sd["fc.weight"] = (rng.standard_normal((1000, 2048)) * 0.01).astype(np.float32)
    sd["fc.bias"] = np.zeros(1000, np.float32)
    return sd


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    sd = build(a.seed)
    n_params = sum(v.size for k, v in sd.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    n33 = sum(v.shape[0] * v.shape[1] for v in sd.values() if v.ndim == 4 and v.shape[2:] == (3, 3))
    save_file(dict(sd), a.out, metadata={"key_order": json.dumps(list(sd))})
    print(f"{a.out}: {n_params / 1e6:.1f} M parameters, {n33} 3x3 filters")


if __name__ == "__main__":
    main()
