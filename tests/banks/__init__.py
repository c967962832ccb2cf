"""Tests of streamlabel.banks: feature, label and sharded banks, knn search and graph, hybrid
memory."""
