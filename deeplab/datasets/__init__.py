"""Data sets: descriptors, image/label reading, TFRecords, the synthetic street scenes."""

from deeplab.datasets.descriptors import DATASETS, DatasetDescriptor, Sample, get_dataset

__all__ = ["DATASETS", "DatasetDescriptor", "Sample", "get_dataset"]
