"""Python client against the real services (addresses from WAKE_REGISTRY_ADDR and
WAKE_RUNTIME_ADDR; tests/polyglot/run.sh starts them)."""

from __future__ import annotations

import uuid

import grpc
import pytest

import wake_example
from wake.v1 import registry_pb2, registry_pb2_grpc, runtime_pb2_grpc


@pytest.fixture(scope="module")
def registry():
    with grpc.insecure_channel(wake_example.registry_addr()) as channel:
        yield registry_pb2_grpc.WakeRegistryStub(channel)


@pytest.fixture(scope="module")
def runtime():
    with grpc.insecure_channel(wake_example.runtime_addr()) as channel:
        yield runtime_pb2_grpc.WakeRuntimeStub(channel)


def test_parent_is_woken_when_child_run_finishes(registry, runtime):
    tenant = f"py-{uuid.uuid4().hex[:8]}"
    result = wake_example.run_flow(registry, runtime, tenant=tenant)

    reg = result.registration
    assert reg.id > 0
    assert reg.tenant_id == tenant
    assert reg.one_shot
    assert reg.condition.WhichOneof("kind") == "run_finished"

    assert len(result.evaluated.wakes) == 1
    wake = result.evaluated.wakes[0]
    assert wake.stream == reg.subscriber_url
    assert wake.registration_id == reg.id
    assert wake.run_finished_status == registry_pb2.COMPLETED
    assert wake.message.source == reg.source_url
    assert [(c.collection, c.kind) for c in wake.message.changes] == [("runs", registry_pb2.UPDATE)]

    claim = result.claim
    assert claim.claim_token
    assert claim.tenant_id == tenant
    assert claim.stream == reg.subscriber_url
    assert [w.id for w in claim.wakes] == [wake.id]
    assert claim.HasField("lease_expires_at")

    assert result.ack.acked == 1
    assert not result.ack.more_pending
    # One-shot: the registration went in the transaction that made its wake.
    assert list(result.remaining.registrations) == []


def test_missing_subscriber_url_is_invalid_argument(registry):
    source = f"/py-test/child/{uuid.uuid4().hex[:12]}"
    with pytest.raises(grpc.RpcError) as raised:
        registry.RegisterWake(
            registry_pb2.RegisterWakeRequest(
                source_url=source,
                condition=registry_pb2.Condition(run_finished=registry_pb2.RunFinishedCondition()),
            ),
            timeout=10,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "subscriber_url" in raised.value.details()
    # Nothing was written.
    listed = registry.ListRegistrations(
        registry_pb2.ListRegistrationsRequest(source_url=source), timeout=10
    )
    assert list(listed.registrations) == []


def test_unspecified_run_status_is_invalid_argument(registry):
    with pytest.raises(grpc.RpcError) as raised:
        registry.EvaluateRunFinished(
            registry_pb2.EvaluateRunFinishedRequest(source_url="/py-test/child", run_key="r1"),
            timeout=10,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "status" in raised.value.details()
