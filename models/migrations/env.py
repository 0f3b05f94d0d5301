"""Alembic environment: runs on the connection models.db.upgrade() hands over."""

from alembic import context

import models.accounts  # noqa: F401  (register tables)
import models.cases  # noqa: F401
import models.identity  # noqa: F401
import models.kpi  # noqa: F401
import models.links  # noqa: F401
import models.org  # noqa: F401
import models.outbox  # noqa: F401
import models.signers  # noqa: F401
from models.db import Base, get_engine

config = context.config
connection = config.attributes.get("connection")


def run(conn) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=conn,
        target_metadata=Base.metadata,
        render_as_batch=conn.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    with get_engine(config.get_main_option("sqlalchemy.url")).connect() as conn:
        run(conn)
        conn.commit()
