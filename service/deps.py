"""FastAPI dependencies: typed access to the per-process state built in the lifespan."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

from chromadb.api import ClientAPI
from fastapi import Depends, Request
from sqlalchemy.orm import Session

from core import chroma
from core.blobs import BlobStore
from core.db import Database
from core.settings import Settings
from workers.client import TaskClient


@dataclass
class AppState:
    settings: Settings
    db: Database
    blobs: BlobStore
    tasks: TaskClient

    @cached_property
    def chroma(self) -> ClientAPI:
        return chroma.connect(self.settings.resolved_chroma_url)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.ragkeep
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.db.session() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def get_settings_dep(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
