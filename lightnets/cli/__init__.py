"""Command lines: each parses its arguments before importing torch, so ``--help`` and a usage error answer at once."""
