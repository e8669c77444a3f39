import sys

from .cli import main

# Guarded: a spawned crawler process may import the main module under another name (``__mp_main__``).
if __name__ == "__main__":
    sys.exit(main())
