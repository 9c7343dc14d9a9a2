"""``python -m nerwin`` does what the ``nerwin`` command does."""

from nerwin.cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess in the tests
    main()
