"""`python -m queuectl` runs the same CLI as the `queuectl` console script."""

from queuectl.cli import main

if __name__ == "__main__":
    main()
