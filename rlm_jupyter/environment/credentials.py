"""Credential filtering: the environment variables a kernel never gets.

A plain (unsandboxed) kernel inherits the parent's environment minus every variable that looks
like a provider or cloud credential; a sandboxed kernel starts from an empty environment
(:func:`.launch.sandbox_env`) and never sees them either. The model's code reaches the LMs
only through the sub-call channel, so provider keys stay in the parent process.
"""

from __future__ import annotations

import os
import re

# Environment variables never passed to the kernel (credentials of providers and clouds).
SECRET_ENV_PATTERNS = [
    r".*_API_KEY$",
    r".*_API_KEYS$",
    r".*_KEY$",
    r".*_TOKEN$",
    r".*_SECRET.*",
    r".*PASSWORD.*",
    r"^AWS_.*",
    r"^AZURE_.*",
    r"^GOOGLE_APPLICATION_CREDENTIALS$",
    r"^VERTEX.*",
    r"^OPENAI.*",
    r"^ANTHROPIC.*",
    r"^GEMINI.*",
    r"^HF_TOKEN$",
    r"^HUGGING.*TOKEN.*",
    r"^LITELLM_.*",
    r"^JPY_.*",
]
_SECRET_RE = re.compile("|".join(SECRET_ENV_PATTERNS), re.IGNORECASE)


def kernel_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``; name -> value) without the variables whose
    names match :data:`SECRET_ENV_PATTERNS` (case-insensitive)."""
    base = dict(os.environ if base is None else base)
    return {k: v for k, v in base.items() if not _SECRET_RE.match(k)}
