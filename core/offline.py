"""Environment that stops the stack from reaching the internet.

Verified traps (see OFFLINE_NOTES): unstructured pings a telemetry URL and downloads a
spaCy model; ragas posts analytics unless RAGAS_DO_NOT_TRACK is the word ``true``;
huggingface tries the hub; Chroma's client sends telemetry; tiktoken downloads its
encodings unless pointed at the copy that llama-index ships.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

_OFFLINE_ENV = {
    "DO_NOT_TRACK": "1",
    "SCARF_NO_ANALYTICS": "true",
    "RAGAS_DO_NOT_TRACK": "true",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "ANONYMIZED_TELEMETRY": "False",
    "TOKENIZERS_PARALLELISM": "false",
    "UNSTRUCTURED_DISABLE_NOTICE": "1",
}


def _tiktoken_cache_dir() -> str | None:
    spec = importlib.util.find_spec("llama_index.core")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "_static" / "tiktoken_cache"
    return str(folder) if folder.is_dir() else None


def apply_offline_environment() -> None:
    """Set (without overriding explicit choices) every variable that keeps libraries offline."""
    for key, value in _OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    if "TIKTOKEN_CACHE_DIR" not in os.environ:
        cache = _tiktoken_cache_dir()
        if cache:
            os.environ["TIKTOKEN_CACHE_DIR"] = cache
