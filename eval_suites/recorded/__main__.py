"""``python -m eval_suites.recorded``: build the recorded development suite (see build.py)."""
import sys

from eval_suites.recorded.build import main

sys.exit(main())
