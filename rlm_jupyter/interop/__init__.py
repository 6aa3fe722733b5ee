"""Adapters that open this project's sandboxed kernel REPL to other RLM stacks.

- :mod:`rlm_jupyter.interop.dspy`: :class:`~rlm_jupyter.interop.dspy.JupyterInterpreter`,
  DSPy's ``CodeInterpreter`` protocol on the environment kernel (``pip install rlm-jupyter[dspy]``).

Nothing is imported here eagerly: the environment kernel imports
:mod:`rlm_jupyter.interop.dspy_kernel_side` through this package and must not pull in DSPy.
"""
