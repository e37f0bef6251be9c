"""``python -m eval`` from a source checkout: the eval harness, :mod:`lightnets.evaluation.cli`."""
import sys

from lightnets.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
