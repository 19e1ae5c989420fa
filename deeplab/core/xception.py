"""DeepLab's aligned Xception (41, 65, 71) and a light Xception for CPU runs.

Wiring follows docs/xception65.md: pre-activation units (ReLU before each
separable conv, no ReLU between depthwise and pointwise) except exit_flow/block2, which has
ReLU after both and no residual; explicit symmetric padding for stride-2 convs; BN epsilon
1e-3; stride reduced and dilation raised once the output stride is reached.

`xception_light` is this code with widths x0.25 and 2 middle-flow units (see VARIANTS); it
keeps DeepLab's layer names, so its structure is the same and only the shapes shrink.
"""

from __future__ import annotations

import dataclasses

import keras

from deeplab.core import layers as L
from deeplab.errors import BadInput


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    scope: str
    depths: tuple[int, int, int]
    skip: str  # conv | sum | none
    stride: int
    num_units: int = 1
    act_in_sep: bool = False


def _xception_blocks(entry, middle_units, width=1.0):
    def d(v):
        return max(8, int(round(v * width)))

    blocks = [BlockSpec(f"entry_flow/block{i + 1}", (d(c),) * 3, "conv", s) for i, (c, s) in enumerate(entry)]
    blocks.append(BlockSpec("middle_flow/block1", (d(728),) * 3, "sum", 1, middle_units))
    blocks.append(BlockSpec("exit_flow/block1", (d(728), d(1024), d(1024)), "conv", 2))
    blocks.append(BlockSpec("exit_flow/block2", (d(1536), d(1536), d(2048)), "none", 1, act_in_sep=True))
    return blocks


_ENTRY_65 = ((128, 2), (256, 2), (728, 2))
_ENTRY_71 = ((128, 2), (256, 1), (256, 2), (728, 1), (728, 2))

# name -> (checkpoint scope, entry blocks, middle units, width multiplier, low-level end point)
VARIANTS = {
    "xception_41": ("xception_41", _ENTRY_65, 8, 1.0, "entry_flow/block2"),
    "xception_65": ("xception_65", _ENTRY_65, 16, 1.0, "entry_flow/block2"),
    "xception_71": ("xception_71", _ENTRY_71, 16, 1.0, "entry_flow/block3"),
    # Light CPU backbone: DeepLab's Xception-65 wiring, widths x0.25, 2 middle units.
    "xception_light": ("xception_65", _ENTRY_65, 2, 0.25, "entry_flow/block2"),
}


def backbone_config(variant: str):
    try:
        return VARIANTS[variant]
    except KeyError:
        raise BadInput(
            f"unknown model_variant '{variant}'; valid: {', '.join(sorted(VARIANTS))}") from None


def xception(inputs, variant: str, output_stride: int = 16, multi_grid=(1, 1, 1),
             batch_norm_decay: float = 0.9997, fine_tune_batch_norm: bool = True,
             width_multiplier: float | None = None):
    """Builds the backbone on a [-1, 1]-scaled image tensor.

    Returns:
      dict of feature maps: `stride_4` (the decoder's low-level feature, the BN output of the
      low-level unit's separable_conv2_pointwise), `out` (backbone output, 2048*width ch),
      plus the output of every block by its scope.
    """
    if output_stride not in (8, 16, 32):
        raise BadInput(f"output_stride must be 8, 16 or 32, got {output_stride}")
    prefix, entry, middle_units, width, low_level = backbone_config(variant)
    if width_multiplier is not None:
        width = width_multiplier
    b = L.Builder(1e-3, batch_norm_decay, fine_tune_batch_norm)
    feats = {}

    def d(v):
        return max(8, int(round(v * width)))

    # Root: conv1_1 (3x3 s2, explicit pad) -> BN -> ReLU -> conv1_2 -> BN -> ReLU.
    x = inputs
    for name, filters, stride in (("conv1_1", d(32), 2), ("conv1_2", d(64), 1)):
        scope = f"{prefix}/entry_flow/{name}"
        x = b.conv(x, filters, 3, scope, stride=stride, explicit_pad=True)
        x = b.bn(x, scope)
        x = L.relu(x, L.scope_to_layer(scope) + ".relu")

    current_stride, rate = 2, 1
    for block in _xception_blocks(entry, middle_units, width):
        for u in range(block.num_units):
            scope = f"{prefix}/{block.scope}/unit_{u + 1}/xception_module"
            if current_stride == output_stride:
                stride, unit_rate = 1, rate
                rate *= block.stride
            else:
                stride, unit_rate = block.stride, 1
                current_stride *= block.stride
            grid = multi_grid if block.scope == "exit_flow/block2" else (1, 1, 1)
            x = _unit(b, x, block, scope, stride, unit_rate, grid, feats,
                      low_level=(block.scope == low_level and u == 0))
        feats[block.scope] = x
    feats["out"] = x
    return feats


def _unit(b, x, block, scope, stride, rate, grid, feats, low_level):
    residual = x
    for i in range(3):
        sc = f"{scope}/separable_conv{i + 1}"
        if not block.act_in_sep:
            residual = L.relu(residual, L.scope_to_layer(sc) + ".pre_relu")
        residual = b.depthwise(residual, sc + "_depthwise", stride=stride if i == 2 else 1,
                               rate=rate * grid[i])
        residual = b.bn(residual, sc + "_depthwise")
        if block.act_in_sep:
            residual = L.relu(residual, L.scope_to_layer(sc) + "_depthwise.relu")
        residual = b.conv(residual, block.depths[i], 1, sc + "_pointwise")
        residual = b.bn(residual, sc + "_pointwise")
        if i == 1 and low_level:
            feats["stride_4"] = residual  # BN output, pre-ReLU (DeepLab's end point)
        if block.act_in_sep:
            residual = L.relu(residual, L.scope_to_layer(sc) + "_pointwise.relu")
    if block.skip == "conv":
        shortcut = b.conv(x, block.depths[2], 1, f"{scope}/shortcut", stride=stride)
        shortcut = b.bn(shortcut, f"{scope}/shortcut")
        return keras.layers.Add(name=L.scope_to_layer(scope) + ".add")([residual, shortcut])
    if block.skip == "sum":
        return keras.layers.Add(name=L.scope_to_layer(scope) + ".add")([residual, x])
    return residual
