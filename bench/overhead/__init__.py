"""Framework-cost benchmarks (``python -m bench overhead``): what rlm_jupyter's loop, Jupyter
kernel and sub-call channel cost next to the LM, measured side by side with the official
implementation (``rlms==0.1.3`` in its own venv)."""
