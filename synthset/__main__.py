"""`python -m synthset` is the CLI; `accelerate launch -m synthset generate RUN` goes through here."""

from synthset.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
