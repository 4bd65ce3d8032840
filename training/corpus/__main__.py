"""``python -m training.corpus``: see ``training.corpus.cli``."""

from training.corpus.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
