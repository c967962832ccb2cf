"""Tests of streamlabel.losses."""
