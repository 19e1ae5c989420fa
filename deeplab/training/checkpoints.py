"""DeepLab checkpoints by variable name: TF1 model-zoo checkpoints and our own name-keyed
weights files (`.npz`, no pickle; the keys are DeepLab's TF1 variable names).

Loader rule (docs/xception65.md): match exact names; ignore optimizer slots
(`/Momentum`, `/ExponentialMovingAverage`, `/RMSProp`, `/RMSProp_1`), `global_step` and the
ImageNet classifier (`<backbone>/logits/...`); skip `logits/semantic/*` when the class count
differs or `initialize_last_layer` is off; fail on any other shape mismatch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import keras
import numpy as np

from deeplab import io_utils
from deeplab.core.layers import BatchNorm, layer_to_scope
from deeplab.errors import BadInput, MissingFile
from deeplab.training.weights_file import read_weights  # noqa: F401 (its import path)

LOGITS_PREFIX = "logits/semantic/"
_IGNORED_SUFFIXES = ("/Momentum", "/ExponentialMovingAverage", "/RMSProp", "/RMSProp_1")


def tf1_variables(model: keras.Model) -> dict:
    """DeepLab TF1 name -> Keras variable, for every weight of the model."""
    out = {}
    for layer in model.layers:
        scope = layer_to_scope(layer.name)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            out[f"{scope}/depthwise_weights"] = layer.kernel
        elif isinstance(layer, keras.layers.Conv2D):
            out[f"{scope}/weights"] = layer.kernel
            if layer.use_bias:
                out[f"{scope}/biases"] = layer.bias
        elif isinstance(layer, BatchNorm):
            for attr in ("gamma", "beta", "moving_mean", "moving_variance"):
                out[f"{scope}/{attr}"] = getattr(layer, attr)
        elif layer.weights:
            raise AssertionError(f"layer {layer.name} has weights without a DeepLab name")
    return out


def is_ignored(name: str) -> bool:
    if name == "global_step" or name.endswith(_IGNORED_SUFFIXES):
        return True
    head = name.split("/", 2)
    return len(head) > 1 and head[0].startswith(("xception_", "mobilenet")) and head[1] == "logits"


@dataclasses.dataclass
class LoadReport:
    loaded: list
    missing: list  # model variables not in the checkpoint (left as initialised)
    unexpected: list  # checkpoint keys neither loaded nor ignored
    skipped_logits: list

    def summary(self) -> str:
        s = (f"loaded {len(self.loaded)} variables; {len(self.missing)} missing (newly "
             f"initialised); {len(self.unexpected)} unexpected")
        if self.skipped_logits:
            s += f"; logits skipped ({len(self.skipped_logits)})"
        return s


def assign_by_name(model: keras.Model, names: dict, get, initialize_last_layer: bool = True,
                   source: str = "checkpoint") -> LoadReport:
    """Assigns checkpoint values to the model by DeepLab name.

    Args:
      names: checkpoint key -> shape.
      get: key -> numpy value.
    """
    variables = tf1_variables(model)
    loaded, skipped, mismatched = [], [], []
    for name, var in variables.items():
        if name not in names:
            continue
        shape = tuple(names[name])
        if name.startswith(LOGITS_PREFIX) and (not initialize_last_layer or shape != tuple(var.shape)):
            skipped.append(name)
            continue
        if shape != tuple(var.shape):
            mismatched.append(f"{name}: {source} {shape} vs model {tuple(var.shape)}")
            continue
        loaded.append(name)
    if mismatched:
        raise BadInput(
            f"{len(mismatched)} shape mismatches between {source} and the model (wrong "
            f"model_variant or output settings?):\n  " + "\n  ".join(mismatched[:20]))
    for name in loaded:
        variables[name].assign(np.asarray(get(name)).astype(variables[name].dtype))
    missing = sorted(set(variables) - set(loaded) - set(skipped))
    unexpected = sorted(n for n in names if n not in variables and not is_ignored(n))
    return LoadReport(loaded, missing, unexpected, skipped)


def load_tf1_checkpoint(model: keras.Model, path: str | Path, initialize_last_layer: bool = True) -> LoadReport:
    """Loads a DeepLab TF1 checkpoint (`model.ckpt` prefix or its folder) into the model."""
    import tensorflow as tf

    path = str(path)
    if Path(path).is_dir():
        found = tf.train.latest_checkpoint(path)
        if found is None:
            idx = sorted(Path(path).glob("*.index"))
            if not idx:
                raise MissingFile(f"no TF1 checkpoint (*.index) in {path}")
            found = str(idx[0])[: -len(".index")]
        path = found
    if not Path(path + ".index").is_file():
        raise MissingFile(
            f"checkpoint {path}.index does not exist: put the DeepLab model-zoo files "
            "(model.ckpt.index, model.ckpt.data-*) under models/ and pass their prefix")
    reader = tf.train.load_checkpoint(path)
    return assign_by_name(model, reader.get_variable_to_shape_map(), reader.get_tensor,
                          initialize_last_layer, source=path)


def save_weights(model: keras.Model, path: str | Path) -> None:
    """Writes every weight as `.npz` keyed by DeepLab name (atomic, no pickle)."""
    arrays = {k: np.asarray(v.numpy()) for k, v in tf1_variables(model).items()}
    with io_utils.atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)


def load_weights(model: keras.Model, path: str | Path, initialize_last_layer: bool = True) -> LoadReport:
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"weights file {path} does not exist")
    arrays = read_weights(path)
    return assign_by_name(model, {k: v.shape for k, v in arrays.items()}, arrays.__getitem__,
                          initialize_last_layer, source=str(path))


def load_initial(model: keras.Model, path: str | Path, initialize_last_layer: bool = True) -> LoadReport:
    """Initial weights from a `.npz` (converted or a trained round) or a TF1 checkpoint."""
    p = Path(path)
    if p.suffix == ".npz":
        return load_weights(model, p, initialize_last_layer)
    return load_tf1_checkpoint(model, p, initialize_last_layer)
