"""Connections for the client tests: the database scripts/test loaded with
fixture.sql, reached as each login role the way the client under test
reaches it."""

import pytest
from sqlalchemy import create_engine

from fixture_facts import (  # noqa: F401 (the tests import them from here)
    ADMIN, ADMIN_ONLY, DB, HOST, NEVER_SHOWN, OUTSIDER, PORT, VIEWER, VIEWS)

ROLES = [ADMIN, VIEWER, OUTSIDER]


def engine_for(role):
    """SQLAlchemy 2 over psycopg 3 on the Unix socket, as Superset's
    SQLAlchemy URI would name it."""
    return create_engine(f"postgresql+psycopg://{role}@/{DB}?host={HOST}&port={PORT}", pool_pre_ping=True)


@pytest.fixture(scope="session", params=ROLES)
def role(request):
    return request.param


@pytest.fixture(scope="session")
def engine(role):
    e = engine_for(role)
    yield e
    e.dispose()
