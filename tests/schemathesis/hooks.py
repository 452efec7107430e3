"""Schemathesis hooks for the denet relay.

Long-polls are real: a generated `wait=30` on an empty room holds the request for
30 s. The contract is the same for every wait, so generated cases use wait=0 and
the run stays short; long-polling has its own e2e tests.
"""
import schemathesis


@schemathesis.hook
def map_query(ctx, query):
    if isinstance(query, dict) and "wait" in query:
        query["wait"] = 0
    return query
