#!/usr/bin/env python3
"""An independent GraphQL client against the appliance: graphql-python's `gql` with
`graphql-core` (the reference implementation's port), none of the appliance's own code.

It introspects the schema over HTTPS and builds a client schema from it (which graphql-core
validates), checks every query against that schema before sending it, runs queries and a
mutation, and then subscribes to `logStream` over WebSocket with the graphql-transport-ws
protocol. It reports on stdout, one `TAG json` line per step, for the Rust test that drives it
(tests/api/graphql/independent.rs).

Needs: pip install 'gql[requests,websockets]' (.ci/run installs it).
"""

import asyncio
import json
import os
import ssl
import sys

from gql import Client, gql
from gql.transport.requests import RequestsHTTPTransport
from gql.transport.websockets import WebsocketsTransport
from graphql import GraphQLError

URL = os.environ["OPENFRAME_GRAPHQL_URL"]
TOKEN = os.environ["OPENFRAME_TOKEN"]
CA = os.environ["OPENFRAME_CA"]
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def say(tag, value):
    print(tag, json.dumps(value, sort_keys=True), flush=True)


def queries():
    transport = RequestsHTTPTransport(url=URL, headers=HEADERS, verify=CA, retries=0)
    with Client(transport=transport, fetch_schema_from_transport=True) as session:
        schema = session.client.schema
        say(
            "SCHEMA",
            {
                "query": sorted(schema.query_type.fields),
                "mutation": sorted(schema.mutation_type.fields),
                "subscription": sorted(schema.subscription_type.fields),
                "nodes": sorted(t.name for t in schema.get_possible_types(schema.type_map["Node"])),
            },
        )

        pages = []
        after = None
        while True:
            page = session.execute(
                gql(
                    """query($after: String) {
                      devices(first: 2, after: $after) {
                        filteredCount
                        pageInfo { hasNextPage endCursor }
                        edges { node { hostname organization { name } tags { key values } } }
                      }
                    }"""
                ),
                variable_values={"after": after},
            )["devices"]
            pages.append([edge["node"]["hostname"] for edge in page["edges"]])
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        say("DEVICES", pages)

        created = session.execute(
            gql(
                """mutation($key: String!) {
                  createTag(key: $key, entityType: "DEVICE", color: "#0a0") { id key color }
                }"""
            ),
            variable_values={"key": "rack"},
        )["createTag"]
        node = session.execute(
            gql("query($id: ID!) { node(id: $id) { __typename ... on Tag { key } } }"),
            variable_values={"id": created["id"]},
        )["node"]
        say("TAG", {"created": created["key"], "color": created["color"], "node": node})

        # The client refuses a query the schema does not allow, before sending it.
        try:
            session.execute(gql("{ devices { edges { node { noSuchField } } } }"))
            say("INVALID", "sent")
        except GraphQLError as error:
            say("INVALID", "refused by the client: " + error.message)


async def live():
    context = ssl.create_default_context(cafile=CA)
    transport = WebsocketsTransport(
        url=URL.replace("https://", "wss://"),
        headers=HEADERS,
        ssl=context,
        subprotocols=[WebsocketsTransport.GRAPHQLWS_SUBPROTOCOL],
    )
    async with Client(transport=transport, fetch_schema_from_transport=False) as session:
        subscription = gql(
            """subscription {
              logStream(filter: {toolTypes: ["MESHCENTRAL"], organizationIds: ["org-acme"]}) {
                toolEventId eventType toolType hostname organizationName summary
              }
            }"""
        )
        seen = []
        async for result in session.subscribe(subscription):
            if not seen:
                say("FIRST", result["logStream"])
            seen.append(result["logStream"])
            if len(seen) == 1:
                break
        say("LIVE", seen)


def main():
    queries()
    say("READY", True)
    # The test starts feeding events once the subscription is open; it keeps feeding until it
    # reads LIVE, so the moment the server starts the subscription does not matter.
    asyncio.run(live())


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # the test shows this line when it fails
        say("ERROR", f"{type(error).__name__}: {error}")
        sys.exit(1)
