// Wakeline from TypeScript: a parent waits for its child's run to finish.
//
// 1. RegisterWake: wake /parent/... when /child/... finishes a run (one-shot).
// 2. A runner connects to WakeRuntime.StreamWakeClaims for the parent's stream.
// 3. EvaluateRunFinished: the child's run completed; the registry persists a wake.
// 4. The runner receives the claim holding that wake and acks it (AckClaim).
//
// Run it against running services (see clients/README.md):
//   WAKE_REGISTRY_ADDR=127.0.0.1:50051 WAKE_RUNTIME_ADDR=127.0.0.1:50052 npm run example
import { randomBytes } from "node:crypto";

import {
  type CallOptions,
  type ClientUnaryCall,
  credentials,
  Metadata,
  type ServiceError,
} from "@grpc/grpc-js";

import {
  Consistency,
  type EvaluateRunFinishedResponse,
  type ListRegistrationsResponse,
  type Registration,
  RunStatus,
  runStatusToJSON,
  WakeRegistryClient,
} from "../gen/wake/v1/registry";
import { type AckClaimResponse, type WakeClaim, WakeRuntimeClient } from "../gen/wake/v1/runtime";

export const registryAddr = (): string => process.env.WAKE_REGISTRY_ADDR || "127.0.0.1:50051";
export const runtimeAddr = (): string => process.env.WAKE_RUNTIME_ADDR || "127.0.0.1:50052";

export function connect(): { registry: WakeRegistryClient; runtime: WakeRuntimeClient } {
  return {
    registry: new WakeRegistryClient(registryAddr(), credentials.createInsecure()),
    runtime: new WakeRuntimeClient(runtimeAddr(), credentials.createInsecure()),
  };
}

type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** Calls a unary method of a generated client; rejects with its ServiceError. */
export function unary<Req, Res>(
  method: UnaryMethod<Req, Res>,
  request: Req,
  timeoutMs = 30_000,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    method(request, new Metadata(), { deadline: Date.now() + timeoutMs }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

export const randomSuffix = (): string => randomBytes(6).toString("hex");

export interface FlowResult {
  registration: Registration;
  evaluated: EvaluateRunFinishedResponse;
  claim: WakeClaim;
  ack: AckClaimResponse;
  remaining: ListRegistrationsResponse;
}

/** Runs the parent/child flow once on fresh stream names. */
export async function runFlow(
  registry: WakeRegistryClient,
  runtime: WakeRuntimeClient,
  tenantId = "",
  timeoutMs = 30_000,
): Promise<FlowResult> {
  const suffix = randomSuffix();
  const parent = `/ts-example/parent/${suffix}`;
  const child = `/ts-example/child/${suffix}`;

  const registered = await unary(
    registry.registerWake.bind(registry),
    {
      tenantId,
      subscriberUrl: parent,
      sourceUrl: child,
      condition: { kind: { $case: "runFinished", value: {} } },
      debounceMs: 0,
      timeoutMs: 0,
      oneShot: true,
      manifestKey: "",
    },
    timeoutMs,
  );
  if (!registered.registration) throw new Error("RegisterWake returned no registration");

  // The runner connects before the child finishes, as a long-running agent
  // host would; cancelling the call closes the runner session.
  const runnerId = `ts-runner-${suffix}`;
  const sessionId = randomSuffix();
  const claims = runtime.streamWakeClaims(
    { runnerId, sessionId, tenantId, streamPrefixes: [parent], maxInFlight: 0 },
    new Metadata(),
    { deadline: Date.now() + timeoutMs },
  );
  const firstClaim = new Promise<WakeClaim>((resolve, reject) => {
    claims.once("data", resolve);
    claims.on("error", reject); // also keeps the cancellation below from throwing
    claims.once("end", () => reject(new Error("StreamWakeClaims ended before a claim")));
  });
  firstClaim.catch(() => undefined); // awaited below; no unhandled rejection meanwhile

  try {
    const evaluated = await unary(
      registry.evaluateRunFinished.bind(registry),
      {
        tenantId,
        sourceUrl: child,
        runKey: `run-${suffix}`,
        status: RunStatus.COMPLETED,
        offset: "",
        consistency: Consistency.CONSISTENCY_UNSPECIFIED,
      },
      timeoutMs,
    );
    const claim = await firstClaim;
    const ack = await unary(
      runtime.ackClaim.bind(runtime),
      {
        runnerId,
        sessionId,
        tenantId: claim.tenantId,
        stream: claim.stream,
        claimToken: claim.claimToken,
        wakeIds: [],
      },
      timeoutMs,
    );
    claims.cancel();
    const remaining = await unary(
      registry.listRegistrations.bind(registry),
      {
        tenantId,
        sourceUrl: "",
        subscriberUrl: parent,
        pageSize: 0,
        pageToken: "",
        consistency: Consistency.CONSISTENCY_UNSPECIFIED,
      },
      timeoutMs,
    );
    return { registration: registered.registration, evaluated, claim, ack, remaining };
  } finally {
    claims.cancel();
  }
}

async function main(): Promise<void> {
  const { registry, runtime } = connect();
  try {
    const result = await runFlow(registry, runtime);
    const reg = result.registration;
    console.log(`registered #${reg.id}: wake ${reg.subscriberUrl} when ${reg.sourceUrl} finishes`);
    for (const wake of result.evaluated.wakes) {
      const status = runStatusToJSON(wake.runFinishedStatus);
      console.log(`evaluation persisted wake #${wake.id} for ${wake.stream} (${status})`);
    }
    console.log(
      `runner got claim ${result.claim.claimToken} on ${result.claim.stream} with ` +
        `${result.claim.wakes.length} wake(s); acked ${result.ack.acked}`,
    );
  } finally {
    registry.close();
    runtime.close();
  }
}

if (require.main === module) {
  main().catch((error: unknown) => {
    console.error("wake-example:", error instanceof Error ? error.message : error);
    process.exit(1);
  });
}
