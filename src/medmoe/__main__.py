import sys

from medmoe.cli.main import main

sys.exit(main())
