"""Wakeline from Python: a parent waits for its child's run to finish.

1. RegisterWake: wake /parent/... when /child/... finishes a run (one-shot).
2. A runner connects to WakeRuntime.StreamWakeClaims for the parent's stream.
3. EvaluateRunFinished: the child's run completed; the registry persists a wake.
4. The runner receives the claim holding that wake and acks it (AckClaim).

Run it against running services (see clients/README.md):
    WAKE_REGISTRY_ADDR=127.0.0.1:50051 WAKE_RUNTIME_ADDR=127.0.0.1:50052 \
        clients/python/.venv/bin/python clients/python/wake_example.py
With TLS and tokens (scripts/run.sh without --plaintext), also set
WAKE_CA_FILE, WAKE_CLIENT_TOKEN_FILE and WAKE_RUNNER_TOKEN_FILE (see main).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402

from wake.v1 import registry_pb2, registry_pb2_grpc  # noqa: E402
from wake.v1 import runtime_pb2, runtime_pb2_grpc  # noqa: E402

DEFAULT_REGISTRY_ADDR = "127.0.0.1:50051"
DEFAULT_RUNTIME_ADDR = "127.0.0.1:50052"


def registry_addr() -> str:
    return os.environ.get("WAKE_REGISTRY_ADDR", DEFAULT_REGISTRY_ADDR)


def runtime_addr() -> str:
    return os.environ.get("WAKE_RUNTIME_ADDR", DEFAULT_RUNTIME_ADDR)


@dataclasses.dataclass
class FlowResult:
    registration: registry_pb2.Registration
    evaluated: registry_pb2.EvaluateRunFinishedResponse
    claim: runtime_pb2.WakeClaim
    ack: runtime_pb2.AckClaimResponse
    remaining: registry_pb2.ListRegistrationsResponse


def run_flow(
    registry: registry_pb2_grpc.WakeRegistryStub,
    runtime: runtime_pb2_grpc.WakeRuntimeStub,
    *,
    tenant: str = "",
    timeout: float = 30.0,
) -> FlowResult:
    """Runs the whole parent/child flow once, on fresh stream names."""
    suffix = uuid.uuid4().hex[:12]
    parent = f"/py-example/parent/{suffix}"
    child = f"/py-example/child/{suffix}"

    registered = registry.RegisterWake(
        registry_pb2.RegisterWakeRequest(
            tenant_id=tenant,
            subscriber_url=parent,
            source_url=child,
            condition=registry_pb2.Condition(run_finished=registry_pb2.RunFinishedCondition()),
            one_shot=True,
        ),
        timeout=timeout,
    )

    # The runner connects before the child finishes, as a long-running agent
    # host would; the deadline bounds the whole session.
    runner_id = f"py-runner-{suffix}"
    session_id = uuid.uuid4().hex
    claims = runtime.StreamWakeClaims(
        runtime_pb2.StreamWakeClaimsRequest(
            runner_id=runner_id,
            session_id=session_id,
            tenant_id=tenant,
            stream_prefixes=[parent],
        ),
        timeout=timeout,
    )
    try:
        evaluated = registry.EvaluateRunFinished(
            registry_pb2.EvaluateRunFinishedRequest(
                tenant_id=tenant,
                source_url=child,
                run_key=f"run-{suffix}",
                status=registry_pb2.COMPLETED,
            ),
            timeout=timeout,
        )
        claim = next(claims)
        ack = runtime.AckClaim(
            runtime_pb2.AckClaimRequest(
                runner_id=runner_id,
                session_id=session_id,
                tenant_id=claim.tenant_id,
                stream=claim.stream,
                claim_token=claim.claim_token,
            ),
            timeout=timeout,
        )
    finally:
        claims.cancel()

    remaining = registry.ListRegistrations(
        registry_pb2.ListRegistrationsRequest(tenant_id=tenant, subscriber_url=parent),
        timeout=timeout,
    )
    return FlowResult(registered.registration, evaluated, claim, ack, remaining)


def channel(address: str, token_file_env: str) -> grpc.Channel:
    """A channel to `address`: plaintext, or TLS with a bearer token.

    With WAKE_CA_FILE set (the services' CA, e.g. .wakeline/credentials/ca.pem),
    the channel verifies the server with it and sends the token read from the
    file named by `token_file_env` on every call. Without it, plaintext (the
    services started with --plaintext --no-auth).
    """
    ca_file = os.environ.get("WAKE_CA_FILE")
    if not ca_file:
        return grpc.insecure_channel(address)
    with open(ca_file, "rb") as f:
        tls = grpc.ssl_channel_credentials(root_certificates=f.read())
    with open(os.environ[token_file_env], encoding="utf-8") as f:
        token = f.read().strip()
    return grpc.secure_channel(
        address,
        grpc.composite_channel_credentials(tls, grpc.access_token_call_credentials(token)),
    )


def main() -> int:
    # The registry is called as a client, the runtime as a runner (tokens of
    # those roles, e.g. .wakeline/credentials/token.client and token.runner).
    with channel(registry_addr(), "WAKE_CLIENT_TOKEN_FILE") as reg_channel, channel(
        runtime_addr(), "WAKE_RUNNER_TOKEN_FILE"
    ) as rt_channel:
        result = run_flow(
            registry_pb2_grpc.WakeRegistryStub(reg_channel),
            runtime_pb2_grpc.WakeRuntimeStub(rt_channel),
        )
    reg = result.registration
    print(f"registered #{reg.id}: wake {reg.subscriber_url} when {reg.source_url} finishes")
    for wake in result.evaluated.wakes:
        status = registry_pb2.RunStatus.Name(wake.run_finished_status)
        print(f"evaluation persisted wake #{wake.id} for {wake.stream} ({status})")
    print(
        f"runner got claim {result.claim.claim_token} on {result.claim.stream} "
        f"with {len(result.claim.wakes)} wake(s); acked {result.ack.acked}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
