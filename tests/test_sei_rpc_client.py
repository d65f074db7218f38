"""The connector's JSON-RPC client against the node double's transport: keep-alive, error answers,
failover and the per-endpoint breaker."""

from __future__ import annotations

import asyncio

import pytest

from flashmm.telemetry.logging import configure_logging
from flashmm.venues.sei.rpc_client import EndpointPool, RPCCallError, RPCClient, TransportError, _redact_url
from flashmm.venues.sei.rpc_server import RPCError, SeiRPCServer

DEAD = "http://127.0.0.1:9"  # the discard port: connection refused


def test_calls_reuse_one_connection_and_errors_are_answers_not_failures():
    async def main():
        configure_logging("error")
        async with SeiRPCServer("arctic-1") as srv:
            async def boom(params):
                raise RPCError(-32602, "bad height")

            srv.register("boom", boom)
            client = RPCClient(EndpointPool([srv.url]))
            for _ in range(5):
                assert (await client.call("status"))["node_info"]["network"] == "arctic-1"
            ep = client.pool.endpoints[0]
            assert len(ep._idle) == 1  # one keep-alive connection served all five calls
            with pytest.raises(RPCCallError) as err:
                await client.call("boom")
            assert err.value.code == -32602 and ep.failures == 0
            await client.close()

    asyncio.run(main())


def test_failover_skips_a_dead_endpoint_and_its_breaker_opens():
    async def main():
        configure_logging("error")
        async with SeiRPCServer("arctic-1") as srv:
            pool = EndpointPool([DEAD, srv.url], failures_to_open=2, cooldown_s=60)
            client = RPCClient(pool, timeout_s=1.0)
            for _ in range(3):
                await client.call("health")
            dead, live = pool.endpoints
            assert dead.errors == 2 and dead.state() == "open"  # opened after two failures, then skipped
            assert live.calls == 3 and live.errors == 0
            await client.close()

    asyncio.run(main())


def test_all_endpoints_down_is_a_transport_error():
    async def main():
        configure_logging("error")
        client = RPCClient(EndpointPool([DEAD]), timeout_s=0.5)
        with pytest.raises(TransportError, match="no RPC endpoint answered"):
            await client.call("status")

    asyncio.run(main())


def test_endpoint_urls_are_validated_and_credentials_redacted():
    with pytest.raises(ValueError):
        EndpointPool(["ws://127.0.0.1:1"])
    with pytest.raises(ValueError):
        EndpointPool([])
    assert _redact_url("https://user:s3cretpass@rpc.example:443/x") == "https://***@rpc.example:443/x"
    assert _redact_url("http://127.0.0.1:26657") == "http://127.0.0.1:26657"
