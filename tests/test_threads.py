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
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
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
