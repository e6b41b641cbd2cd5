"""Shared foundations: settings, errors, catalog, blob store, Chroma access.

Importing ``core`` pins the environment variables that keep every library of the
stack offline. They must be set before unstructured, ragas, tiktoken or
huggingface are imported anywhere in the process, so this is the one place.
"""

from core.offline import apply_offline_environment

apply_offline_environment()
