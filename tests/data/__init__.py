"""Tests of streamlabel.data: dataset parsers, the synthetic generator, samplers, transforms and
loaders."""
