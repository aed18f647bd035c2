"""Layers shared by the model families."""

from genjax.nn.conv import ConvDecoder, ConvEncoder, depth_to_space
from genjax.nn.mlp import MLP

__all__ = ["MLP", "ConvDecoder", "ConvEncoder", "depth_to_space"]
