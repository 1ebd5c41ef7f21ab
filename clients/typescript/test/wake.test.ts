// TypeScript client against the real services (addresses from WAKE_REGISTRY_ADDR
// and WAKE_RUNTIME_ADDR; tests/polyglot/run.sh starts them).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { type ServiceError, status } from "@grpc/grpc-js";

import { connect, randomSuffix, runFlow, unary } from "../src/example";
import {
  Consistency,
  Op,
  RunStatus,
  type WakeRegistryClient,
} from "../gen/wake/v1/registry";
import type { WakeRuntimeClient } from "../gen/wake/v1/runtime";

/** Asserts that a call failed with INVALID_ARGUMENT whose message names field. */
async function rejectsWithInvalidArgument(call: Promise<unknown>, field: string): Promise<void> {
  await assert.rejects(call, (error: ServiceError) => {
    assert.equal(error.code, status.INVALID_ARGUMENT, `code ${error.code}: ${error.details}`);
    assert.match(error.details, new RegExp(field));
    return true;
  });
}

describe("wakeline TypeScript client", () => {
  let registry: WakeRegistryClient;
  let runtime: WakeRuntimeClient;
  before(() => ({ registry, runtime } = connect()));
  after(() => {
    registry.close();
    runtime.close();
  });

  it("wakes the parent when the child's run finishes", async () => {
    const tenantId = `ts-${randomSuffix()}`;
    const { registration: reg, evaluated, claim, ack, remaining } = await runFlow(
      registry,
      runtime,
      tenantId,
    );

    assert.ok(reg.id > 0);
    assert.equal(reg.tenantId, tenantId);
    assert.equal(reg.oneShot, true);
    assert.equal(reg.condition?.kind?.$case, "runFinished");

    assert.equal(evaluated.wakes.length, 1);
    const wake = evaluated.wakes[0];
    assert.equal(wake.stream, reg.subscriberUrl);
    assert.equal(wake.registrationId, reg.id);
    assert.equal(wake.runFinishedStatus, RunStatus.COMPLETED);
    assert.equal(wake.message?.source, reg.sourceUrl);
    assert.deepEqual(
      wake.message?.changes.map((c) => [c.collection, c.kind]),
      [["runs", Op.UPDATE]],
    );

    assert.ok(claim.claimToken);
    assert.equal(claim.tenantId, tenantId);
    assert.equal(claim.stream, reg.subscriberUrl);
    assert.deepEqual(
      claim.wakes.map((w) => w.id),
      [wake.id],
    );
    assert.ok(claim.leaseExpiresAt instanceof Date);

    assert.equal(ack.acked, 1);
    assert.equal(ack.morePending, false);
    // One-shot: the registration went in the transaction that made its wake.
    assert.deepEqual(remaining.registrations, []);
  });

  it("rejects a registration without subscriber_url with INVALID_ARGUMENT", async () => {
    const sourceUrl = `/ts-test/child/${randomSuffix()}`;
    await rejectsWithInvalidArgument(
      unary(registry.registerWake.bind(registry), {
        tenantId: "",
        subscriberUrl: "",
        sourceUrl,
        condition: { kind: { $case: "runFinished", value: {} } },
        debounceMs: 0,
        timeoutMs: 0,
        oneShot: false,
        manifestKey: "",
      }),
      "subscriber_url",
    );
    const listed = await unary(registry.listRegistrations.bind(registry), {
      tenantId: "",
      sourceUrl,
      subscriberUrl: "",
      pageSize: 0,
      pageToken: "",
      consistency: Consistency.CONSISTENCY_UNSPECIFIED,
    });
    assert.deepEqual(listed.registrations, [], "a rejected RegisterWake wrote nothing");
  });

  it("rejects an evaluation without a run status with INVALID_ARGUMENT", async () => {
    await rejectsWithInvalidArgument(
      unary(registry.evaluateRunFinished.bind(registry), {
        tenantId: "",
        sourceUrl: "/ts-test/child",
        runKey: "r1",
        status: RunStatus.RUN_STATUS_UNSPECIFIED,
        offset: "",
        consistency: Consistency.CONSISTENCY_UNSPECIFIED,
      }),
      "status",
    );
  });
});
