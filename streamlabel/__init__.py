"""streamlabel: an online pseudo-label engine for unsupervised and domain-adaptive re-ID."""

__version__ = "0.1.0"
