"""Cross-cutting reliability checks: bad inputs, adversarial command lines, kill -9, disk full,
soak."""
