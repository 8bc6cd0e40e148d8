// Command stub-sshd is the deploy benchmark's stand-in for a fleet: one SSH
// server listening on many loopback ports (one per host of the generated
// stack) that accepts any key and answers every command with exit status 0
// and no output, after reading its stdin to the end; its SFTP subsystem keeps
// each session's files in memory and forgets them when it ends. With it, a first
// `pulumi up` of a 200-host stack measures what the engine, the program and
// the command plugin cost, without the hosts' own work (which the sandbox
// measures on real hosts).
//
// Usage: stub-sshd -address 127.0.0.1 -ports N [-delay 300ms]
// -delay holds each command that long before it answers, as a host's own work
// would (to see what the engine's --parallel does).
// Prints one line of JSON, {"ports":[...]}, once every port listens; runs
// until its stdin closes, then prints {"commands":N} and exits.
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

var (
	commands atomic.Int64
	delay    time.Duration
)

func main() {
	address := flag.String("address", "127.0.0.1", "loopback address to listen on")
	count := flag.Int("ports", 1, "how many ports to listen on (each on a free port)")
	flag.DurationVar(&delay, "delay", 0, "how long each command takes before it answers")
	flag.Parse()
	if ip := net.ParseIP(*address); ip == nil || !ip.IsLoopback() {
		fail("-address %q: only a loopback address", *address)
	}

	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		fail("host key: %v", err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		fail("host key: %v", err)
	}
	config := &ssh.ServerConfig{
		PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil },
	}
	config.AddHostKey(signer)

	ports := make([]int, 0, *count)
	for i := 0; i < *count; i++ {
		listener, err := net.Listen("tcp", net.JoinHostPort(*address, "0"))
		if err != nil {
			fail("listen: %v", err)
		}
		ports = append(ports, listener.Addr().(*net.TCPAddr).Port)
		go serve(listener, config)
	}
	if err := json.NewEncoder(os.Stdout).Encode(map[string]any{"ports": ports}); err != nil {
		fail("stdout: %v", err)
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{"commands": commands.Load()})
}

func serve(listener net.Listener, config *ssh.ServerConfig) {
	for {
		conn, err := listener.Accept()
		if err != nil {
			return
		}
		go handle(conn, config)
	}
}

func handle(conn net.Conn, config *ssh.ServerConfig) {
	defer conn.Close()
	_, channels, requests, err := ssh.NewServerConn(conn, config)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(requests)
	for newChannel := range channels {
		if newChannel.ChannelType() != "session" {
			_ = newChannel.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		channel, channelRequests, err := newChannel.Accept()
		if err != nil {
			continue
		}
		go session(channel, channelRequests)
	}
}

func session(channel ssh.Channel, requests <-chan *ssh.Request) {
	for req := range requests {
		switch req.Type {
		case "env":
			_ = req.Reply(true, nil)
		case "exec":
			_ = req.Reply(true, nil)
			go func() {
				_, _ = io.Copy(io.Discard, channel)
				time.Sleep(delay)
				commands.Add(1)
				_, _ = channel.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
				_ = channel.Close()
			}()
		case "subsystem":
			var name struct{ Name string }
			if ssh.Unmarshal(req.Payload, &name) != nil || name.Name != "sftp" {
				_ = req.Reply(false, nil)
				continue
			}
			_ = req.Reply(true, nil)
			go func() {
				server := sftp.NewRequestServer(channel, sftp.InMemHandler())
				_ = server.Serve()
				_ = server.Close()
				_, _ = channel.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{0}))
				_ = channel.Close()
			}()
		default:
			_ = req.Reply(false, nil)
		}
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "stub-sshd: "+format+"\n", args...)
	os.Exit(1)
}
