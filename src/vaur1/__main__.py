import sys

from vaur1.cli import main

sys.exit(main())
