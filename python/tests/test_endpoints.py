"""Plans of several endpoints, some naming another server, are read in order."""

from __future__ import annotations

import json
import threading

import pyarrow as pa
import pyarrow.flight as flight
import pytest

import loaderd
from conftest import values_digest


class Splitter(flight.FlightServerBase):
    """A Flight server that plans a stream as two endpoints: the first `head`
    batches served by itself (relayed from loaderd), the rest by loaderd,
    named by its location."""

    def __init__(self, upstream: str, head: int):
        super().__init__("grpc://127.0.0.1:0")
        self.upstream, self.head = upstream, head
        self.up = flight.FlightClient(upstream)

    def _info(self, req):
        return self.up.get_flight_info(flight.FlightDescriptor.for_command(json.dumps(req)))

    def get_flight_info(self, context, descriptor):
        req = json.loads(descriptor.command)
        whole = self._info(req)
        rest = self._info(dict(req, start_batch=req.get("start_batch", 0) + self.head))
        endpoints = [flight.FlightEndpoint(json.dumps(req).encode(), []),
                     flight.FlightEndpoint(rest.endpoints[0].ticket, [self.upstream])]
        return flight.FlightInfo(whole.schema, descriptor, endpoints, whole.total_records, -1)

    def do_get(self, context, ticket):
        req = json.loads(ticket.ticket)
        reader = self.up.do_get(self._info(req).endpoints[0].ticket)
        batches = [reader.read_chunk().data for _ in range(self.head)]
        reader.cancel()
        return flight.RecordBatchStream(pa.RecordBatchReader.from_batches(reader.schema, batches))


@pytest.fixture
def splitter(server):
    s = Splitter(server.address, head=3)
    t = threading.Thread(target=s.serve, daemon=True)
    t.start()
    yield s
    s.shutdown()
    t.join()


def test_endpoints_in_order_across_servers(server, splitter):
    with server.client() as direct:
        want = list(direct.batches("d", epoch=4, batch_size=5, rank=1, world_size=2))
    with loaderd.Client(f"127.0.0.1:{splitter.port}") as c:
        plan = c.plan("d", epoch=4, batch_size=5, rank=1, world_size=2)
        assert len(plan.endpoints) == 2 and plan.num_batches == len(want)
        got = list(c.batches("d", epoch=4, batch_size=5, rank=1, world_size=2))
        assert set(c._conns) == {c.location, server.address}  # it dialled loaderd itself
    assert len(got) == len(want) == 7
    assert values_digest(got) == values_digest(want)
