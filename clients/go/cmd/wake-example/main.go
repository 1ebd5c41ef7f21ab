// Command wake-example runs the parent/child wake flow against running
// services (WAKE_REGISTRY_ADDR, WAKE_RUNTIME_ADDR) and prints what happened.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	wakev1 "wakeline/clients/go/gen/wake/v1"
	"wakeline/clients/go/wakeexample"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "wake-example:", err)
		os.Exit(1)
	}
}

func run() error {
	registryConn, err := wakeexample.Dial(wakeexample.RegistryAddr())
	if err != nil {
		return err
	}
	defer registryConn.Close()
	runtimeConn, err := wakeexample.Dial(wakeexample.RuntimeAddr())
	if err != nil {
		return err
	}
	defer runtimeConn.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	result, err := wakeexample.RunFlow(ctx, wakev1.NewWakeRegistryClient(registryConn),
		wakev1.NewWakeRuntimeClient(runtimeConn), "")
	if err != nil {
		return err
	}
	reg := result.Registration
	fmt.Printf("registered #%d: wake %s when %s finishes\n", reg.GetId(), reg.GetSubscriberUrl(),
		reg.GetSourceUrl())
	for _, w := range result.Evaluated.GetWakes() {
		fmt.Printf("evaluation persisted wake #%d for %s (%s)\n", w.GetId(), w.GetStream(),
			w.GetRunFinishedStatus())
	}
	fmt.Printf("runner got claim %s on %s with %d wake(s); acked %d\n",
		result.Claim.GetClaimToken(), result.Claim.GetStream(), len(result.Claim.GetWakes()),
		result.Ack.GetAcked())
	return nil
}
