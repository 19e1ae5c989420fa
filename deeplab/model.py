"""DeepLabv3+: backbone, ASPP with image pooling, decoder at output stride 4, 1x1 logits.

Layer names are DeepLab's variable scopes (see deeplab/core/layers.py): `image_pooling`,
`aspp0`, `aspp{1,2,3}_{depthwise,pointwise}`, `concat_projection`,
`decoder/feature_projection0`, `decoder/decoder_conv{0,1}_{depthwise,pointwise}`,
`logits/semantic`. The model takes float images in [0, 255] (any size) and returns logits at
the input size (`align_corners=True` bilinear), as DeepLab does for training and prediction.
"""

from __future__ import annotations

import dataclasses
import json

import keras

from deeplab.core import layers as L
from deeplab.core import xception
from deeplab.errors import BadInput


@dataclasses.dataclass
class ModelOptions:
    """Everything that defines the network; written next to every trained model."""

    num_classes: int = 19
    model_variant: str = "xception_65"
    output_stride: int = 16
    atrous_rates: tuple[int, ...] | None = None  # default: (6, 12, 18) at OS16, doubled at OS8
    decoder_output_stride: int | None = 4  # None: DeepLabv3 without decoder
    multi_grid: tuple[int, int, int] = (1, 1, 1)
    aspp_depth: int | None = None  # default 256 (64 for xception_light)
    decoder_depth: int | None = None  # default 256 (64 for xception_light)
    low_level_depth: int | None = None  # default 48 (16 for xception_light)
    batch_norm_decay: float = 0.9997  # batch norm's moving-average decay (Keras: momentum)
    fine_tune_batch_norm: bool = True
    dropout_keep_prob: float = 0.9

    def resolved(self) -> "ModelOptions":
        o = dataclasses.replace(self)
        light = self.model_variant == "xception_light"
        if o.atrous_rates is None:
            o.atrous_rates = {8: (12, 24, 36), 16: (6, 12, 18), 32: (3, 6, 9)}[o.output_stride]
        o.atrous_rates = tuple(int(r) for r in o.atrous_rates)
        o.multi_grid = tuple(o.multi_grid)
        o.aspp_depth = o.aspp_depth or (64 if light else 256)
        o.decoder_depth = o.decoder_depth or (64 if light else 256)
        o.low_level_depth = o.low_level_depth or (16 if light else 48)
        return o

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self.resolved()), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelOptions":
        d = json.loads(text)
        if "bn_momentum" in d:  # the field's name in files written before it was renamed
            d.setdefault("batch_norm_decay", d.pop("bn_momentum"))
        for k in ("atrous_rates", "multi_grid"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)


def _sep_conv(b, x, filters, scope, rate, relu_tag):
    """Split separable conv of the head: DW 3x3 -> BN -> ReLU -> PW 1x1 -> BN -> ReLU."""
    x = b.depthwise(x, scope + "_depthwise", rate=rate, init_std=0.33)
    x = L.relu(b.bn(x, scope + "_depthwise"), L.scope_to_layer(scope) + "_depthwise.relu")
    x = b.conv(x, filters, 1, scope + "_pointwise", init_std=0.06)
    return L.relu(b.bn(x, scope + "_pointwise"), L.scope_to_layer(scope) + "_pointwise.relu")


def build_model(options: ModelOptions, input_shape=(None, None, 3)) -> keras.Model:
    """The DeepLabv3+ Keras model (functional, deterministic layer names)."""
    o = options.resolved()
    if o.num_classes < 2:
        raise BadInput(f"num_classes must be >= 2, got {o.num_classes}")
    if o.decoder_output_stride not in (None, 4):
        raise BadInput("decoder_output_stride must be 4 (or None for no decoder)")
    images = keras.Input(input_shape, name="images")
    x = L.ScaleInput(name="preprocess")(images)
    feats = xception.xception(x, o.model_variant, o.output_stride, o.multi_grid, o.batch_norm_decay,
                              o.fine_tune_batch_norm)
    net = feats["out"]
    b = L.Builder(1e-5, o.batch_norm_decay, o.fine_tune_batch_norm)
    glorot = keras.initializers.GlorotUniform()

    # ASPP: image pooling, 1x1, three atrous separable convs; concat order as DeepLab.
    pool = keras.layers.GlobalAveragePooling2D(keepdims=True, name="image_pooling.mean")(net)
    pool = b.conv(pool, o.aspp_depth, 1, "image_pooling", initializer=glorot)
    pool = L.relu(b.bn(pool, "image_pooling"), "image_pooling.relu")
    pool = L.ResizeLike(name="image_pooling.resize")(pool, net)
    branches = [pool]
    a0 = b.conv(net, o.aspp_depth, 1, "aspp0", initializer=glorot)
    branches.append(L.relu(b.bn(a0, "aspp0"), "aspp0.relu"))
    for i, rate in enumerate(o.atrous_rates, start=1):
        branches.append(_sep_conv(b, net, o.aspp_depth, f"aspp{i}", rate, f"aspp{i}"))
    x = keras.layers.Concatenate(name="aspp.concat")(branches)
    x = b.conv(x, o.aspp_depth, 1, "concat_projection", initializer=glorot)
    x = L.relu(b.bn(x, "concat_projection"), "concat_projection.relu")
    x = keras.layers.Dropout(1.0 - o.dropout_keep_prob, name="concat_projection.dropout")(x)

    if o.decoder_output_stride is not None:
        low = feats["stride_4"]
        low = b.conv(low, o.low_level_depth, 1, "decoder/feature_projection0", initializer=glorot)
        low = L.relu(b.bn(low, "decoder/feature_projection0"), "decoder.feature_projection0.relu")
        up = L.ResizeToScale(4, name="decoder.resize")(x, images)
        x = keras.layers.Concatenate(name="decoder.concat")([up, low])
        for i in range(2):
            x = _sep_conv(b, x, o.decoder_depth, f"decoder/decoder_conv{i}", 1, f"decoder_conv{i}")
    logits = keras.layers.Conv2D(
        o.num_classes, 1, use_bias=True, name="logits.semantic",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.01))(x)
    logits = L.ResizeLike(name="logits.resize")(logits, images)
    return keras.Model(images, logits, name=f"deeplabv3plus_{o.model_variant}")


def regularized_kernels(model: keras.Model) -> list:
    """Kernels that get weight decay: every non-depthwise conv kernel (79 in Xception-65
    DeepLabv3+), not depthwise kernels, BN parameters or the logits bias."""
    return [layer.kernel for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
