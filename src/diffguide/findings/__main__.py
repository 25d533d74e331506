"""`python -m diffguide.findings`: the command of `diffguide.findings.report`."""
import sys

from diffguide.findings.report import main

sys.exit(main())
