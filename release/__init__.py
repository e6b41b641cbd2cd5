"""The version lifecycle: what happens to a knowledge base between an upload and its owners' report.

- ``intake``: an upload (validation, quota, blobs, revisions, its ingest job) and the parse of one revision;
- ``builds``: the one pending build per collection, building a version, what runs next;
- ``gate``: the typed promotion decision of a gated build;
- ``publish``: publishing, rolling back, retention;
- ``evaluations``: starting and running evaluations, what the nightly run evaluates;
- ``reports``: building and sending the owners' report;
- ``collections``: usage and deletion of a collection;
- ``dispatch``: "mark dispatched -> audit -> commit -> send", the one way work leaves the catalog.

Functions take what they need (a session, an ``Enqueue`` callable, a Chroma client...);
nothing here imports FastAPI or Celery, so the API, the workers and the CLI share one rulebook.
"""
