"""Ending the transactions a node abandoned: one cut off from the database (or frozen) in the
middle of a transaction leaves the server waiting for its next statement, holding its locks (a
repository's, or the one every claim takes), for as long as the dead connection lingers: hours,
with the server's default keepalives. Every node ends, on the server, the transactions of any
node that have waited longer than a limit no transaction of ours ever waits (they run their
statements back to back, in milliseconds).

The server's own `idle_in_transaction_session_timeout` would do this, but it is armed only when
the server reports ready for a query, and a pipeline ends with a flush request after its sync,
which disarms it: our transactions are pipelined, so it never fires for them.
"""

from typing import Any

import psycopg

# Our connections say who they are, so no one else's session is ever ended; the janitor's own
# connection has a name of its own.
APPLICATION_NAME = "hobotnica"
JANITOR_NAME = "hobotnica janitor"

_END_ABANDONED = """
SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
FROM pg_stat_activity
WHERE datname = current_database()
  AND application_name = %s
  AND pid <> pg_backend_pid()
  AND pg_has_role(usesysid, 'MEMBER')
  AND state IN ('idle in transaction', 'idle in transaction (aborted)')
  AND state_change < clock_timestamp() - make_interval(secs => %s)
"""


async def end_abandoned_transactions(
    connection: "psycopg.AsyncConnection[Any]", limit: float
) -> int:
    """End our sessions whose transaction has waited more than `limit` seconds for its next
    statement; how many were ended. (Sessions of the role this node connects as, or of roles it
    is a member of: it sees no other's state, and may signal no other.)"""
    cursor = await connection.execute(_END_ABANDONED, [APPLICATION_NAME, limit])
    found = await cursor.fetchone()
    return int(found[0]) if found else 0
