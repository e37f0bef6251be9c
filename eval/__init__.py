"""The repository-root runner of ``python -m eval`` (not installed: an installed lightnets runs ``lightnets-eval``)."""
