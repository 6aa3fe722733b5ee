"""Quality benchmarks (``python -m bench quality``): task generators with exact gold answers
(S-NIAH, OOLONG-style, OOLONG-Pairs), the paper's scoring, and a runner comparing the base
model (context stuffed into the prompt), the RLM, and the RLM without sub-calls."""
