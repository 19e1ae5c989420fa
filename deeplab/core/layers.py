"""Building blocks shared by the backbones and the DeepLabv3+ head.

Layer names are DeepLab's TF1 variable scopes with `/` written as `.` (Keras 3 forbids `/`), so
`xception_65/entry_flow/conv1_1` is the layer `xception_65.entry_flow.conv1_1` and checkpoints
map by name without a table.
"""

from __future__ import annotations

import keras
import tensorflow as tf


def scope_to_layer(scope: str) -> str:
    return scope.replace("/", ".")


def layer_to_scope(name: str) -> str:
    return name.replace(".", "/")


@keras.saving.register_keras_serializable(package="deeplab")
class BatchNorm(keras.layers.BatchNormalization):
    """Batch norm whose statistics update only when `update_stats` (DeepLab's
    `fine_tune_batch_norm`) and the call is in training mode; gamma and beta still train."""

    def __init__(self, update_stats: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.update_stats = update_stats

    def call(self, inputs, training=None, mask=None):
        return super().call(inputs, training=bool(training) and self.update_stats, mask=mask)

    def get_config(self):
        return {**super().get_config(), "update_stats": self.update_stats}


@keras.saving.register_keras_serializable(package="deeplab")
class ResizeLike(keras.layers.Layer):
    """Bilinear resize of `x` to the spatial size of `like` with `align_corners=True` (DeepLab)."""

    def call(self, x, like):
        size = tf.shape(like)[1:3]
        return tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=True)

    def compute_output_shape(self, x_shape, like_shape):
        return (x_shape[0], like_shape[1], like_shape[2], x_shape[3])


@keras.saving.register_keras_serializable(package="deeplab")
class ResizeToScale(keras.layers.Layer):
    """Bilinear resize (align_corners=True) to `scale_dimension(size, 1/stride)` of `like`:
    `int((dim - 1) / stride + 1)`, DeepLab's size for a stride-`stride` feature map."""

    def __init__(self, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride

    def call(self, x, like):
        hw = tf.shape(like)[1:3]
        size = tf.cast((hw - 1) / self.stride + 1, tf.int32)
        return tf.raw_ops.ResizeBilinear(images=x, size=size, align_corners=True)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


@keras.saving.register_keras_serializable(package="deeplab")
class ScaleInput(keras.layers.Layer):
    """DeepLab's `_preprocess_zero_mean_unit_range`: pixels in [0, 255] -> [-1, 1]."""

    def call(self, x):
        return tf.cast(x, self.compute_dtype) * (2.0 / 255.0) - 1.0


class Builder:
    """Creates named layers with DeepLab's initialisers, epsilons and BN settings."""

    def __init__(self, bn_epsilon: float, batch_norm_decay: float, update_stats: bool):
        self.bn_epsilon = bn_epsilon
        self.batch_norm_decay = batch_norm_decay
        self.update_stats = update_stats

    def bn(self, x, scope, epsilon=None):
        return BatchNorm(update_stats=self.update_stats, momentum=self.batch_norm_decay,
                         epsilon=self.bn_epsilon if epsilon is None else epsilon,
                         name=scope_to_layer(scope + "/BatchNorm"))(x)

    def conv(self, x, filters, kernel, scope, stride=1, rate=1, init_std=0.09, use_bias=False,
             explicit_pad=False, initializer=None):
        if explicit_pad and stride > 1:
            x = fixed_padding(x, kernel, rate, scope)
            padding = "valid"
        else:
            padding = "same"
        init = initializer or keras.initializers.TruncatedNormal(stddev=init_std)
        return keras.layers.Conv2D(filters, kernel, strides=stride, dilation_rate=rate,
                                   padding=padding, use_bias=use_bias, kernel_initializer=init,
                                   name=scope_to_layer(scope))(x)

    def depthwise(self, x, scope, stride=1, rate=1, init_std=0.09):
        if stride > 1:
            x = fixed_padding(x, 3, rate, scope)
            padding = "valid"
        else:
            padding = "same"
        return keras.layers.DepthwiseConv2D(
            3, strides=stride, dilation_rate=rate, padding=padding, use_bias=False,
            depthwise_initializer=keras.initializers.TruncatedNormal(stddev=init_std),
            name=scope_to_layer(scope))(x)


def fixed_padding(x, kernel, rate, scope):
    """DeepLab's explicit symmetric padding before a strided VALID conv."""
    k_eff = kernel + (kernel - 1) * (rate - 1)
    total = k_eff - 1
    beg = total // 2
    return keras.layers.ZeroPadding2D(((beg, total - beg), (beg, total - beg)),
                                      name=scope_to_layer(scope) + ".pad")(x)


def relu(x, name):
    return keras.layers.ReLU(name=name)(x)
