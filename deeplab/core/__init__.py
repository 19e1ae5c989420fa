"""Backbones for DeepLabv3+."""
