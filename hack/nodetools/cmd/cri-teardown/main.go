// Command cri-teardown stops and removes every pod sandbox of a CRI runtime, the way the
// kubelet would: StopPodSandbox (containers killed, CNI DEL, network namespace released),
// then RemovePodSandbox. The local node runs it against its own containerd before stopping
// it, so no shim, mount or network namespace outlives the run. crictl would do the same but
// is not available from the Go module proxy; `ctr` bypasses CRI and leaves shims and network
// namespaces behind.
//
//	cri-teardown -endpoint unix:///path/containerd.sock [-timeout 30s]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "", "the CRI socket, unix:///path")
	timeout := flag.Duration("timeout", 30*time.Second, "deadline for the whole teardown")
	flag.Parse()
	if !strings.HasPrefix(*endpoint, "unix://") {
		fmt.Fprintln(os.Stderr, "cri-teardown: -endpoint unix:///path is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	if err := teardown(ctx, *endpoint); err != nil {
		fmt.Fprintf(os.Stderr, "cri-teardown: %v\n", err)
		os.Exit(1)
	}
}

func teardown(ctx context.Context, endpoint string) error {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	client := runtime.NewRuntimeServiceClient(conn)
	sandboxes, err := client.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list sandboxes: %w", err)
	}
	var failed []string
	for _, sandbox := range sandboxes.Items {
		id := sandbox.Id
		if _, err := client.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			failed = append(failed, fmt.Sprintf("stop %s: %v", id, err))
			continue
		}
		if _, err := client.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			failed = append(failed, fmt.Sprintf("remove %s: %v", id, err))
		}
	}
	fmt.Printf("cri-teardown: %d sandboxes, %d failures\n", len(sandboxes.Items), len(failed))
	if len(failed) > 0 {
		return fmt.Errorf("%s", strings.Join(failed, "; "))
	}
	return nil
}
