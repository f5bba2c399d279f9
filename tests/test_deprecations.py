"""Our own modules raise no DeprecationWarning when imported (scripts/import_helpers.py, a fresh interpreter)."""
import subprocess
import sys

from helpers.profiles import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "import_helpers.py"


def test_every_helpers_module_imports_without_deprecation_warnings_from_our_code():
    r = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert r.returncode == 0 and " 0 failed, 0 skipped" in r.stdout, r.stdout + r.stderr


def test_a_deprecated_construct_in_a_helpers_module_fails_the_check(tmp_path):
    """The filter is by module: a warning attributed to helpers.* is an error, one of a library is not."""
    code = (f"import sys, warnings; sys.argv = ['x']; sys.path.insert(0, {str(REPO_ROOT / 'scripts')!r}); "
            "import import_helpers as ih; "
            "[warnings.filterwarnings('error', category=c, module=ih.OUR_MODULES) "
            " for c in (DeprecationWarning, PendingDeprecationWarning)]; "
            "g = {'__name__': 'helpers.fake'}; "
            "exec(\"import warnings\\nwarnings.warn('old API', DeprecationWarning)\", g)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode != 0 and "DeprecationWarning: old API" in r.stderr, r.stderr
    library = code.replace("'helpers.fake'", "'somelib.module'")
    r = subprocess.run([sys.executable, "-c", library], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
