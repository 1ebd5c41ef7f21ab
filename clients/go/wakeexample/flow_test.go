// Go client against the real services (addresses from WAKE_REGISTRY_ADDR and
// WAKE_RUNTIME_ADDR; tests/polyglot/run.sh starts them).
package wakeexample_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	wakev1 "wakeline/clients/go/gen/wake/v1"
	"wakeline/clients/go/wakeexample"
)

func clients(t *testing.T) (wakev1.WakeRegistryClient, wakev1.WakeRuntimeClient) {
	t.Helper()
	registryConn, err := wakeexample.Dial(wakeexample.RegistryAddr())
	if err != nil {
		t.Fatalf("dial registry: %v", err)
	}
	t.Cleanup(func() { registryConn.Close() })
	runtimeConn, err := wakeexample.Dial(wakeexample.RuntimeAddr())
	if err != nil {
		t.Fatalf("dial runtime: %v", err)
	}
	t.Cleanup(func() { runtimeConn.Close() })
	return wakev1.NewWakeRegistryClient(registryConn), wakev1.NewWakeRuntimeClient(runtimeConn)
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestParentIsWokenWhenChildRunFinishes(t *testing.T) {
	registry, runtime := clients(t)
	tenant := "go-" + wakeexample.RandomSuffix()
	result, err := wakeexample.RunFlow(testContext(t), registry, runtime, tenant)
	if err != nil {
		t.Fatal(err)
	}

	reg := result.Registration
	if reg.GetId() <= 0 || reg.GetTenantId() != tenant || !reg.GetOneShot() ||
		reg.GetCondition().GetRunFinished() == nil {
		t.Fatalf("unexpected registration: %v", reg)
	}

	wakes := result.Evaluated.GetWakes()
	if len(wakes) != 1 {
		t.Fatalf("EvaluateRunFinished made %d wakes, want 1: %v", len(wakes), result.Evaluated)
	}
	wake := wakes[0]
	if wake.GetStream() != reg.GetSubscriberUrl() || wake.GetRegistrationId() != reg.GetId() ||
		wake.GetRunFinishedStatus() != wakev1.RunStatus_COMPLETED ||
		wake.GetMessage().GetSource() != reg.GetSourceUrl() {
		t.Fatalf("unexpected wake: %v", wake)
	}
	changes := wake.GetMessage().GetChanges()
	if len(changes) != 1 || changes[0].GetCollection() != "runs" ||
		changes[0].GetKind() != wakev1.Op_UPDATE {
		t.Fatalf("unexpected changes: %v", changes)
	}

	claim := result.Claim
	if claim.GetClaimToken() == "" || claim.GetTenantId() != tenant ||
		claim.GetStream() != reg.GetSubscriberUrl() || claim.GetLeaseExpiresAt() == nil {
		t.Fatalf("unexpected claim: %v", claim)
	}
	if len(claim.GetWakes()) != 1 || claim.GetWakes()[0].GetId() != wake.GetId() {
		t.Fatalf("claim holds %v, want wake %d", claim.GetWakes(), wake.GetId())
	}

	if result.Ack.GetAcked() != 1 || result.Ack.GetMorePending() {
		t.Fatalf("unexpected ack: %v", result.Ack)
	}
	// One-shot: the registration went in the transaction that made its wake.
	if n := len(result.Remaining.GetRegistrations()); n != 0 {
		t.Fatalf("%d registrations left after a one-shot wake, want 0", n)
	}
}

// wantInvalidArgument checks err is a gRPC status INVALID_ARGUMENT naming field.
func wantInvalidArgument(t *testing.T, err error, field string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error is not a gRPC status: %v", err)
	}
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("code = %v, want InvalidArgument (%q)", st.Code(), st.Message())
	}
	if !strings.Contains(st.Message(), field) {
		t.Fatalf("message %q does not name %q", st.Message(), field)
	}
}

func TestMissingSubscriberURLIsInvalidArgument(t *testing.T) {
	registry, _ := clients(t)
	ctx := testContext(t)
	source := "/go-test/child/" + wakeexample.RandomSuffix()
	_, err := registry.RegisterWake(ctx, &wakev1.RegisterWakeRequest{
		SourceUrl: source,
		Condition: &wakev1.Condition{
			Kind: &wakev1.Condition_RunFinished{RunFinished: &wakev1.RunFinishedCondition{}},
		},
	})
	wantInvalidArgument(t, err, "subscriber_url")

	listed, err := registry.ListRegistrations(ctx, &wakev1.ListRegistrationsRequest{SourceUrl: source})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(listed.GetRegistrations()); n != 0 {
		t.Fatalf("a rejected RegisterWake left %d registrations", n)
	}
}

func TestUnspecifiedRunStatusIsInvalidArgument(t *testing.T) {
	registry, _ := clients(t)
	_, err := registry.EvaluateRunFinished(testContext(t), &wakev1.EvaluateRunFinishedRequest{
		SourceUrl: "/go-test/child",
		RunKey:    "r1",
	})
	wantInvalidArgument(t, err, "status")
}
