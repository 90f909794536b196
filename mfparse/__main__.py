import sys

from mfparse.cli import main

sys.exit(main())
