"""Engines for the history database: SQLite (WAL) by default, PostgreSQL (psycopg 3) by URL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from auditd.logs import register_secret
from auditd.store.checkpoint import BACKSTOP_PAGES, LOG_KEPT_BYTES


def normalize_url(url: str) -> str:
    """Accept the plain ``postgresql://`` spelling and use psycopg 3 for it."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u.render_as_string(hide_password=False)


def make_engine(url: str, background_checkpoints: bool = False) -> Engine:
    """``background_checkpoints``: on SQLite, this engine's commits checkpoint the write-ahead
    log only past a backstop; a ``store/checkpoint.py`` Checkpointer does before (the daemon)."""
    url = normalize_url(url)
    u = make_url(url)
    # Whatever a driver or SQLAlchemy might echo in an error, the log scrubs these.
    register_secret(u.password if isinstance(u.password, str) else None)
    for key in ("password", "sslpassword"):
        value = u.query.get(key)
        register_secret(value if isinstance(value, str) else None)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        if background_checkpoints:
            event.listen(engine, "connect", _checkpoints_elsewhere)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets `auditd report` read while the daemon writes; NORMAL is durable across process
    # crashes in WAL mode, which is the failure we care about.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _checkpoints_elsewhere(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA wal_autocheckpoint={BACKSTOP_PAGES}")
    cur.execute(f"PRAGMA journal_size_limit={LOG_KEPT_BYTES}")
    cur.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)
