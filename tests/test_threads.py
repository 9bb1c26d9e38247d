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
