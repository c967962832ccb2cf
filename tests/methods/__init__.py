"""Tests of streamlabel.methods: the policies (hcd and its tracking, dbscan, spcl, ...), anchors,
cluster dynamics, label propagation and the policy registry."""
