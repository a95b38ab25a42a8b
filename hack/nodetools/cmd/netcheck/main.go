// Command netcheck dials HOST:PORT over TCP from inside a pod, sends its second argument and
// a newline, and prints the line the server answers (also to /dev/termination-log, so the
// reply shows in the pod's status). It exits 1 with the error when the dial or the exchange
// fails: tests use it to show what a pod on the local node can reach and what it cannot.
package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"time"
)

func fail(err error) {
	msg := fmt.Sprintf("netcheck: %v\n", err)
	fmt.Fprint(os.Stderr, msg)
	_ = os.WriteFile("/dev/termination-log", []byte(msg), 0o644)
	os.Exit(1)
}

func main() {
	if len(os.Args) != 3 {
		fail(fmt.Errorf("usage: netcheck HOST:PORT MESSAGE"))
	}
	conn, err := net.DialTimeout("tcp", os.Args[1], 5*time.Second)
	if err != nil {
		fail(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		fail(err)
	}
	if _, err := fmt.Fprintf(conn, "%s\n", os.Args[2]); err != nil {
		fail(err)
	}
	reply, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		fail(err)
	}
	fmt.Print(reply)
	_ = os.WriteFile("/dev/termination-log", []byte(reply), 0o644)
}
