"""``python -m pgcheck.grading``: the instructor's release and trusted autograde commands."""

from pgcheck.grading.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
