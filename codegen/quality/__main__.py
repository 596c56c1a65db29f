"""`python -m codegen.quality PKG_DIR...`: the dead-code check (as `codegen lint --dead-code`)."""

import sys

from codegen.cli import main

if __name__ == "__main__":
    sys.exit(main(["lint", "--dead-code", *sys.argv[1:]]))
