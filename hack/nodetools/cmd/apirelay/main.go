// Command apirelay makes the local API server reachable from the node's pod network: it
// listens on LISTEN (the run's bridge address) and relays each TCP connection, bytes as they
// are, to TARGET (the API server on 127.0.0.1). TLS and authentication stay end to end between
// the pod and the API server; the relay sees only ciphertext.
//
// It exists because kube-apiserver serves on one address, and the local control plane's is
// loopback: binding 0.0.0.0 would expose it beyond the machine, and the bridge is created
// after the control plane starts. kube-proxy then routes the `kubernetes` Service's ClusterIP
// to this relay, as it would to an API server's own address on a real cluster.
//
//	apirelay LISTEN_HOST:PORT TARGET_HOST:PORT
package main

import (
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"time"
)

const dialTimeout = 5 * time.Second

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: apirelay LISTEN_HOST:PORT TARGET_HOST:PORT")
		os.Exit(2)
	}
	listener, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		log.Fatalf("apirelay: %v", err)
	}
	log.Printf("apirelay: %s -> %s", os.Args[1], os.Args[2])
	for {
		conn, err := listener.Accept()
		if err != nil {
			// A temporary error (too many open files, say) must not end the relay.
			log.Printf("apirelay: accept: %v", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		go relay(conn.(*net.TCPConn), os.Args[2])
	}
}

func relay(client *net.TCPConn, target string) {
	defer client.Close()
	dialed, err := net.DialTimeout("tcp", target, dialTimeout)
	if err != nil {
		log.Printf("apirelay: %s: %v", client.RemoteAddr(), err)
		return
	}
	server := dialed.(*net.TCPConn)
	defer server.Close()
	done := make(chan struct{}, 2)
	pipe := func(to, from *net.TCPConn) {
		_, _ = io.Copy(to, from)
		// Half-close: the other direction may still have bytes to deliver (a watch's end).
		_ = to.CloseWrite()
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}
