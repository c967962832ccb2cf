"""Tests of streamlabel.models: backbones, heads, part features, weights and ONNX import."""
