"""Cross-cutting end-to-end training runs (trainer, launch.train, policies, banks together)."""
