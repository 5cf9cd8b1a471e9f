"""Print a dataset's summary; exit status 2 with one line if the file is invalid.

    python data_collection/inspect.py data/reach_avoid/high.h5 [--cost-limit K]
"""

import sys


def main() -> None:
    import argparse

    from go2_sevpo.data.format import DatasetError, load_dataset
    from go2_sevpo.data.summary import summarize

    parser = argparse.ArgumentParser(description="Print a dataset's summary.")
    parser.add_argument("path")
    parser.add_argument("--cost-limit", type=float, default=None, help="episode cost limit (default: the file's)")
    args = parser.parse_args()
    try:
        print(summarize(load_dataset(args.path), args.cost_limit))
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    # Python puts a script's folder first on the import path, and this file shares its name with the
    # standard library's `inspect` (imported by dataclasses, numpy, torch): drop the folder first.
    from pathlib import Path

    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    main()
else:
    # The same clash seen from a sibling script (collect.py, mix.py): its `import inspect` lands here.
    # Hand the importer the standard library's module instead of this script.
    import importlib.util
    import os

    _spec = importlib.util.spec_from_file_location("inspect", os.path.join(os.path.dirname(os.__file__), "inspect.py"))
    _stdlib_inspect = importlib.util.module_from_spec(_spec)
    sys.modules["inspect"] = _stdlib_inspect
    _spec.loader.exec_module(_stdlib_inspect)
