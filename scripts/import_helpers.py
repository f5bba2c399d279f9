"""Import every helpers module in this interpreter with deprecation warnings *from our own code* as errors.

A DeprecationWarning attributed to a helpers module (our call of a deprecated API, or a deprecated
construct in our source) fails here, on the Python and library versions of whatever venv runs this:
tests/test_deprecations.py runs it in the CI venv, scripts/colab_replica.sh in the Colab replica
(Python 3.13, Colab's versions). Warnings raised inside third-party libraries by their own imports
(resemblyzer's scipy.ndimage.morphology, ipykernel's date parsing) are theirs, not checked here.

Usage: python scripts/import_helpers.py [--skip-missing]
  --skip-missing: a module whose third-party import is not installed in this venv (the replica has
  only what the notebooks install; the speech server's fastapi is not among it) is listed as
  skipped, not failed. Every skip is printed with the missing module.
"""
import importlib
import sys
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUR_MODULES = r"helpers(\..*)?$"  # the warnings filter's module regex: the module a warning is attributed to


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    skip_missing = "--skip-missing" in argv
    sys.path.insert(0, str(ROOT))
    for category in (DeprecationWarning, PendingDeprecationWarning):
        warnings.filterwarnings("error", category=category, module=OUR_MODULES)
    names = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                   for p in (ROOT / "helpers").rglob("*.py")
                   if p.stem != "__main__")  # a __main__ runs its command when imported
    failed, skipped = [], []
    for name in names:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            if skip_missing and e.name and not e.name.startswith("helpers"):
                skipped.append(f"{name} (needs {e.name})")
            else:
                failed.append(f"{name}: {type(e).__name__}: {e}")
        except (DeprecationWarning, PendingDeprecationWarning) as e:
            failed.append(f"{name}: {type(e).__name__}: {e}")
    for s in skipped:
        print(f"skipped {s}")
    for f in failed:
        print(f"FAILED {f}")
    print(f"imported {len(names) - len(failed) - len(skipped)} helpers modules on Python "
          f"{sys.version.split()[0]}: {len(failed)} failed, {len(skipped)} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
