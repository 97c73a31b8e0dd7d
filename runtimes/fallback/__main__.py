import sys

from .threads import prefer_passive_wait

prefer_passive_wait(sys.argv[1:])  # before .server imports torch

from .server import main  # noqa: E402

sys.exit(main(sys.argv[1:]))
