"""Tests of streamlabel.evaluation: retrieval metrics, re-ranking, feature extraction, label
quality."""
