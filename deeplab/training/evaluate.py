"""Evaluation of a trained model on a split's TFRecords at full resolution: mIoU, per-class IoU
and the confusion matrix (`evaluate`), and its table (`format_table`); its command line is
`python -m deeplab.eval` (deeplab/eval.py)."""

from __future__ import annotations

import dataclasses

import numpy as np

from deeplab.errors import BadInput


@dataclasses.dataclass
class EvalConfig:
    """What `python -m deeplab.eval` takes besides the data set (its flags are these fields)."""

    checkpoint_dir: str  # a finished train_logdir
    eval_split: str = "val"
    eval_batch_size: int = 1
    output: str | None = None  # the JSON written (default: <checkpoint_dir>/eval_<split>.json)


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int,
                     ignore_label: int = 255) -> np.ndarray:
    """int64 [C, C]: rows ground truth, columns prediction; ignore pixels excluded."""
    labels = np.asarray(labels).ravel()
    preds = np.asarray(preds).ravel()
    valid = labels != ignore_label
    if np.any(labels[valid] >= num_classes):
        raise BadInput(f"ground truth holds values >= {num_classes} other than {ignore_label}")
    code = labels[valid].astype(np.int64) * num_classes + preds[valid]
    return np.bincount(code, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(cm: np.ndarray) -> tuple[float, np.ndarray]:
    """(mIoU over classes with a non-empty union, per-class IoU with NaN for empty unions)."""
    tp = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - tp
    iou = np.full(len(cm), np.nan)
    np.divide(tp, union, out=iou, where=union > 0)
    present = union > 0
    miou = float(iou[present].mean()) if present.any() else float("nan")
    return miou, iou


def format_table(iou: np.ndarray, class_names, miou: float) -> str:
    lines = [f"{'class':16s} {'IoU':>7s}"]
    for name, v in zip(class_names, iou):
        lines.append(f"{name:16s} {'   n/a' if np.isnan(v) else f'{100 * v:6.2f}'}")
    lines.append(f"{'mIoU':16s} {100 * miou:6.2f}")
    return "\n".join(lines)


def evaluate(model, tfrecord_dir, split: str, num_classes: int, ignore_label: int = 255,
             batch_size: int = 1, progress: bool = True) -> dict:
    """Runs the model over a split and returns {miou, per_class_iou, confusion_matrix, images}."""
    import tensorflow as tf
    from tqdm import tqdm

    from deeplab.datasets import data_generator

    ds = data_generator.build_dataset(tfrecord_dir, split, batch_size=batch_size, is_training=False,
                                      ignore_label=ignore_label)

    @tf.function(reduce_retracing=True, autograph=False)
    def predict(images):
        return tf.argmax(model(images, training=False), axis=-1, output_type=tf.int32)

    cm = np.zeros((num_classes, num_classes), np.int64)
    n = 0
    from deeplab.datasets.tfrecord import read_meta

    meta = read_meta(tfrecord_dir, split) or {}
    total = -(-meta["count"] // batch_size) if "count" in meta else None  # batches, when known
    for batch in tqdm(ds, desc=f"eval {split}", unit="batch", total=total, disable=not progress):
        preds = predict(batch["image"]).numpy()
        cm += confusion_matrix(batch["label"].numpy(), preds, num_classes, ignore_label)
        n += int(batch["image"].shape[0])
    if n == 0:
        raise BadInput(f"split '{split}' in {tfrecord_dir} has no examples")
    miou, iou = iou_from_confusion(cm)
    return {"miou": miou, "per_class_iou": [None if np.isnan(v) else float(v) for v in iou],
            "confusion_matrix": cm.tolist(), "images": n}
