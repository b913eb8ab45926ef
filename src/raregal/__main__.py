import sys

from raregal.cli import main

sys.exit(main())
