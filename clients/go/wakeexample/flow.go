// Package wakeexample shows Wakeline from Go: a parent waits for its child's
// run to finish.
//
//  1. RegisterWake: wake /parent/... when /child/... finishes a run (one-shot).
//  2. A runner connects to WakeRuntime.StreamWakeClaims for the parent's stream.
//  3. EvaluateRunFinished: the child's run completed; the registry persists a wake.
//  4. The runner receives the claim holding that wake and acks it (AckClaim).
package wakeexample

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	wakev1 "wakeline/clients/go/gen/wake/v1"
)

// Addresses of the services: WAKE_REGISTRY_ADDR and WAKE_RUNTIME_ADDR, else the
// defaults of scripts/run.sh.
func RegistryAddr() string { return envOr("WAKE_REGISTRY_ADDR", "127.0.0.1:50051") }
func RuntimeAddr() string  { return envOr("WAKE_RUNTIME_ADDR", "127.0.0.1:50052") }

func envOr(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

// Dial opens a plaintext connection (the services listen on loopback).
func Dial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// Result is everything the flow saw, for printing or checking.
type Result struct {
	Registration *wakev1.Registration
	Evaluated    *wakev1.EvaluateRunFinishedResponse
	Claim        *wakev1.WakeClaim
	Ack          *wakev1.AckClaimResponse
	Remaining    *wakev1.ListRegistrationsResponse
}

// RandomSuffix makes stream names unique per run.
func RandomSuffix() string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// RunFlow runs the parent/child flow once on fresh stream names; ctx bounds it.
func RunFlow(ctx context.Context, registry wakev1.WakeRegistryClient,
	runtime wakev1.WakeRuntimeClient, tenant string) (*Result, error) {
	suffix := RandomSuffix()
	parent := "/go-example/parent/" + suffix
	child := "/go-example/child/" + suffix

	registered, err := registry.RegisterWake(ctx, &wakev1.RegisterWakeRequest{
		TenantId:      tenant,
		SubscriberUrl: parent,
		SourceUrl:     child,
		Condition: &wakev1.Condition{
			Kind: &wakev1.Condition_RunFinished{RunFinished: &wakev1.RunFinishedCondition{}},
		},
		OneShot: true,
	})
	if err != nil {
		return nil, fmt.Errorf("RegisterWake: %w", err)
	}

	// The runner connects before the child finishes, as a long-running agent
	// host would. Cancelling streamCtx closes the runner session.
	runnerID := "go-runner-" + suffix
	sessionID := RandomSuffix()
	streamCtx, closeSession := context.WithCancel(ctx)
	defer closeSession()
	claims, err := runtime.StreamWakeClaims(streamCtx, &wakev1.StreamWakeClaimsRequest{
		RunnerId:       runnerID,
		SessionId:      sessionID,
		TenantId:       tenant,
		StreamPrefixes: []string{parent},
	})
	if err != nil {
		return nil, fmt.Errorf("StreamWakeClaims: %w", err)
	}

	evaluated, err := registry.EvaluateRunFinished(ctx, &wakev1.EvaluateRunFinishedRequest{
		TenantId:  tenant,
		SourceUrl: child,
		RunKey:    "run-" + suffix,
		Status:    wakev1.RunStatus_COMPLETED,
	})
	if err != nil {
		return nil, fmt.Errorf("EvaluateRunFinished: %w", err)
	}

	claim, err := claims.Recv()
	if err != nil {
		return nil, fmt.Errorf("StreamWakeClaims.Recv: %w", err)
	}
	ack, err := runtime.AckClaim(ctx, &wakev1.AckClaimRequest{
		RunnerId:   runnerID,
		SessionId:  sessionID,
		TenantId:   claim.GetTenantId(),
		Stream:     claim.GetStream(),
		ClaimToken: claim.GetClaimToken(),
	})
	if err != nil {
		return nil, fmt.Errorf("AckClaim: %w", err)
	}
	closeSession()

	remaining, err := registry.ListRegistrations(ctx, &wakev1.ListRegistrationsRequest{
		TenantId:      tenant,
		SubscriberUrl: parent,
	})
	if err != nil {
		return nil, fmt.Errorf("ListRegistrations: %w", err)
	}
	return &Result{registered.GetRegistration(), evaluated, claim, ack, remaining}, nil
}
