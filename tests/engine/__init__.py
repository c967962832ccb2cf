"""Tests of streamlabel.engine modules on their own (checkpoint); whole training runs are in
tests/training."""
