"""python -m gengrad.cli: the gengrad command."""
import sys

from . import main

sys.exit(main())
