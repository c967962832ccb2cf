"""The streamlabel test suite (a package, so helpers import by path: tests.helpers...,
tests.data.reid_layouts)."""
