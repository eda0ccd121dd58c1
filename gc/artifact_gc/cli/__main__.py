"""``python -m artifact_gc.cli``: the ``gc`` command, for profiling and for environments
without the console script on the PATH."""

from artifact_gc.cli import main

if __name__ == "__main__":
    main()
