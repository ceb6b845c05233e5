"""Tell a database that is down from a database that refuses what it was given.

Down (retry the same write, it will go through once the database is back): lost or refused
connections, a server shutting down, a full disk, a lock timeout, a serialization failure.
Refused (retrying the same write fails forever): a value the column cannot hold, a constraint,
an encoding error. The ingest writer retries the first and isolates the item behind the second.
"""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout


def database_down(e: BaseException) -> bool:
    """True when ``e`` says the database is unavailable, not that the data is wrong."""
    if isinstance(e, OperationalError | InterfaceError | DisconnectionError | PoolTimeout):
        return True
    # psycopg raises some outages as other classes (an admin shutdown mid-statement, say);
    # SQLAlchemy marks those connection_invalidated.
    return isinstance(e, DBAPIError) and bool(e.connection_invalidated)


class NotLeader(Exception):
    """This process does not (or no longer) lead a scope it was about to write: its commit is
    refused before it reaches the history (daemon/leader.py's fence). Not the database's fault
    nor the data's: what was not written is the new leader's to write."""
