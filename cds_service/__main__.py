"""python -m cds_service -> the spasm-cds command."""
import sys

from .cli import main

sys.exit(main())
