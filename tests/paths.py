"""Where the repository is: test data, docs and configs are read relative to it."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
