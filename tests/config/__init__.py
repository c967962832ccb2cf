"""Tests of streamlabel.config: schema, loading, checks, fingerprint (fuzzed too)."""
