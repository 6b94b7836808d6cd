"""python -m gengrad: the gengrad command."""
import sys

from .cli import main

sys.exit(main())
