"""Tests of streamlabel.launch: the commands (evaluate, labels, compare), argument checks, recipes,
packages."""
