"""Benchmarks of rlm_jupyter: answer quality (``bench.quality``) and framework cost
(``bench.overhead``), the latter measured side by side with the official implementation
(PyPI ``rlms==0.1.3``, installed into the benchmark's own virtual environment).

Run ``python -m bench --help``; see ``bench/README.md``. Benchmarks print figures and write
JSON under ``bench/results/`` (git-ignored); tests only check that they run
(``tests/test_bench_smoke.py``).
"""
