import sys

from ssnas.cli import main

sys.exit(main())
