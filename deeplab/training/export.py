"""Exports a trained model as a TensorFlow SavedModel: uint8 images [B, H, W, 3] in, softmax
probabilities [B, H, W, C] out (endpoint `serve`); its command line is
`python -m deeplab.export_model` (deeplab/export_model.py)."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path


@dataclasses.dataclass
class ExportConfig:
    """What `python -m deeplab.export_model` takes (its flags are these fields)."""

    checkpoint_dir: str  # a finished train_logdir
    export_path: str  # the SavedModel's folder
    inference_scale: float = 1.0  # the paper's Cityscapes setting: 0.5


def export(model, export_path: str | Path, inference_scale: float = 1.0) -> Path:
    """Writes the SavedModel (atomically: a temporary folder renamed into place)."""
    import keras
    import tensorflow as tf

    from deeplab.training.inference import Predictor

    predictor = Predictor(model, inference_scale)
    export_path = Path(export_path)
    tmp = export_path.with_name(export_path.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    archive = keras.export.ExportArchive()
    archive.track(model)

    def serve(images):
        return predictor._fn(images, tf.shape(images)[1:3])

    archive.add_endpoint("serve", serve,
                         input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
    archive.write_out(str(tmp), verbose=False)
    if export_path.exists():
        shutil.rmtree(export_path)
    tmp.rename(export_path)
    return export_path
