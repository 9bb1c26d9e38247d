"""refplay.threads: one thread per trial, every BLAS included."""

def test_pin_threads_limits_every_blas_including_numbas():
    """pin_threads must also reach the BLAS Numba loads lazily (SciPy's OpenBLAS)."""
    import subprocess
    import sys
    code = (
        "from refplay import threads\n"
        "threads.pin_threads(1)\n"
        "from threadpoolctl import threadpool_info\n"
        "libs = [i for i in threadpool_info() if i['user_api'] == 'blas']\n"
        "assert libs, 'no BLAS found'\n"
        "assert any('scipy' in i['filepath'] for i in libs), libs\n"
        "assert all(i['num_threads'] == 1 for i in libs), libs\n"
        "print(threads.keep_freed_memory())\n"
    )
    # Without *_NUM_THREADS variables (a test runner may set them): every BLAS starts
    # with one thread per core, so pinning really has something to do.
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_thread_free_env())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "True"   # glibc's mallopt is available on Linux


def test_set_thread_env_after_numba_started_its_threads_does_not_break_compilation():
    """Numba re-reads NUMBA_NUM_THREADS at each compilation and refuses a changed value."""
    import subprocess
    import sys
    code = (
        "import os\n"
        "os.environ['NUMBA_NUM_THREADS'] = '2'\n"
        "import numba\n"
        "numba.set_num_threads(1)          # launches the threading layer with 2 threads\n"
        "from refplay import threads\n"
        "threads.set_thread_env(1)\n"
        "threads.pin_threads(1)\n"
        "f = numba.njit(lambda x: x + 1)\n"
        "assert f(1) == 2                  # compiles: would raise if the env var had changed\n"
        "assert numba.get_num_threads() == 1\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]


# ---------------------------------------------------------------- same bits on any install
_TRIAL_IN_A_FRESH_PROCESS = """
import os, sys
import numpy as np
from threadpoolctl import threadpool_info
from refplay import io, train

def blas_threads():
    return sorted({i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"})

before = blas_threads()
# batch 500: matrices large enough that a 2-thread OpenBLAS sums in another order
result = train.run_trial("mnist1d_mlp", {"optimizer": "adam", "lr": 1e-3, "batch_size": 500},
                         seed=0, max_train_steps=200, eval_every=100)
assert result.status == "complete", result.status
assert blas_threads() == before, (before, blas_threads())   # the caller's counts come back
arrays = {"grad_norms": result.grad_norms, "eval_steps": np.asarray(result.eval_steps)}
arrays.update({f"curve:{k}": np.asarray(v) for k, v in result.curves.items()})
io.save_npz(sys.argv[1], arrays)
print(before)
"""


def _thread_free_env():
    """This process's environment without any ``*_NUM_THREADS`` / ``*_MAXIMUM_THREADS`` variable."""
    import os
    return {k: v for k, v in os.environ.items()
            if not (k.endswith("_NUM_THREADS") or k.endswith("_MAXIMUM_THREADS"))}


def test_a_trial_gives_the_same_bits_with_the_blas_thread_variables_unset(tmp_path):
    """The core install pins BLAS itself: no environment variable is needed for the same bits.

    The variables only reach a BLAS loaded after they are set; a user's shell has
    none, so numpy's OpenBLAS starts with one thread per core. ``run_trial`` must
    still run on one thread and so reproduce, bit for bit, a run where the
    variable was set before numpy loaded.
    """
    import os
    import subprocess
    import sys

    import numpy as np

    from refplay import io

    runs = {}
    for name, extra in (("unset", {}), ("one_thread", {"OPENBLAS_NUM_THREADS": "1"})):
        out = tmp_path / f"{name}.npz"
        proc = subprocess.run([sys.executable, "-c", _TRIAL_IN_A_FRESH_PROCESS, str(out)],
                              env={**_thread_free_env(), **extra}, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs[name] = (io.load_npz(out), proc.stdout.strip())
    # The test is only a test if the unset run really started with a multi-threaded BLAS.
    cores = len(os.sched_getaffinity(0))
    if cores >= 2:
        assert runs["unset"][1] != "[1]", "numpy's BLAS started single-threaded without variables"
    assert runs["one_thread"][1] == "[1]"
    a, b = runs["unset"][0], runs["one_thread"][0]
    assert sorted(a) == sorted(b)
    for key in a:
        assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), key


def test_threadpoolctl_is_a_core_dependency_not_a_test_extra():
    """Thread pinning must not depend on which extras were installed."""
    import pathlib
    import re
    import tomllib

    pyproject = tomllib.loads((pathlib.Path(__file__).parent.parent / "pyproject.toml").read_text())
    core = [re.split(r"[<>=!~ \[]", d, maxsplit=1)[0] for d in pyproject["project"]["dependencies"]]
    assert "threadpoolctl" in core
