package command

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/util/retry"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"hx-backup/pulumi-engine/standin/internal/serve"
)

// The environment variables that carry the previous run's output, as upstream names them.
const (
	previousStdout = "PULUMI_COMMAND_STDOUT"
	previousStderr = "PULUMI_COMMAND_STDERR"
)

func known(v resource.PropertyValue) bool { return !v.ContainsUnknowns() }

// reveal strips secret markers at every depth: the value as the command needs it.
func reveal(v resource.PropertyValue) resource.PropertyValue {
	switch {
	case v.IsSecret():
		return reveal(v.SecretValue().Element)
	case v.IsObject():
		out := resource.PropertyMap{}
		for k, e := range v.ObjectValue() {
			out[k] = reveal(e)
		}
		return resource.NewObjectProperty(out)
	case v.IsArray():
		out := make([]resource.PropertyValue, len(v.ArrayValue()))
		for i, e := range v.ArrayValue() {
			out[i] = reveal(e)
		}
		return resource.NewArrayProperty(out)
	}
	return v
}

func makeSecret(v resource.PropertyValue) resource.PropertyValue {
	if v.IsSecret() {
		return v
	}
	return resource.MakeSecret(v)
}

func plainString(v resource.PropertyValue) string {
	if p := reveal(v); p.IsString() {
		return p.StringValue()
	}
	return ""
}

// state is what one run needs: the checked inputs, revealed, and the outputs of the run before.
type state struct {
	props          resource.PropertyMap
	stdout, stderr string
}

func stateOf(props resource.PropertyMap, stdout, stderr string) *state {
	return &state{props: props, stdout: stdout, stderr: stderr}
}

func (s *state) command(key resource.PropertyKey) (string, bool) {
	v, ok := s.props[key]
	if !ok || reveal(v).IsNull() || !reveal(v).IsString() {
		return "", false
	}
	return reveal(v).StringValue(), true
}

func (s *state) outputs(props resource.PropertyMap) resource.PropertyMap {
	props["stdout"] = resource.NewStringProperty(s.stdout)
	props["stderr"] = resource.NewStringProperty(s.stderr)
	return props
}

func (s *state) logging() (stdout, stderr bool) {
	mode, _ := s.command("logging")
	switch mode {
	case "", "stdoutAndStderr":
		return true, true
	case "stdout":
		return true, false
	case "stderr":
		return false, true
	}
	return false, false
}

// run runs cmd in a new SSH session. On success stdout and stderr become the outputs, each without its
// one trailing newline; on failure the error reads as upstream's: the exit status, `running "<cmd>"`,
// and the combined output.
func (s *state) run(ctx context.Context, cmd string, log serve.Log) error {
	client, err := dialConnection(ctx, s.props, log)
	if err != nil {
		return err
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return err
	}
	defer session.Close()
	// A cancelled operation closes the session, as upstream's context would end it.
	stop := context.AfterFunc(ctx, func() { _ = session.Close(); _ = client.Close() })
	defer stop()

	if env, ok := s.props["environment"]; ok && reveal(env).IsObject() {
		for _, k := range sortedKeys(reveal(env).ObjectValue()) {
			if err := session.Setenv(k, plainString(reveal(env).ObjectValue()[resource.PropertyKey(k)])); err != nil {
				log.Error(setenvAdvice(k))
				return fmt.Errorf("could not set environment variable %q: %w", k, err)
			}
		}
	}
	if add, ok := s.props["addPreviousOutputInEnv"]; !ok || !reveal(add).IsBool() || reveal(add).BoolValue() {
		for name, value := range map[string]string{previousStdout: s.stdout, previousStderr: s.stderr} {
			if value == "" {
				continue
			}
			if err := session.Setenv(name, value); err != nil {
				log.Warning(setenvAdvice(name))
			}
		}
	}
	if stdin, ok := s.command("stdin"); ok && stdin != "" {
		session.Stdin = strings.NewReader(stdin)
	}

	var stdout, stderr bytes.Buffer
	combined := &lockedBuffer{}
	logOut, logErr := s.logging()
	lines, linesDone := lineLogger(log)
	session.Stdout = writers(logOut, lines, &stdout, combined)
	session.Stderr = writers(logErr, lines, &stderr, combined)
	err = session.Run(cmd)
	_ = lines.Close()
	<-linesDone
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", err, ctx.Err())
		}
		return fmt.Errorf("%w: running %q:\n%s", err, cmd, combined.String())
	}
	s.stdout = strings.TrimSuffix(stdout.String(), "\n")
	s.stderr = strings.TrimSuffix(stderr.String(), "\n")
	return nil
}

func setenvAdvice(name string) string {
	return fmt.Sprintf("Unable to set '%s'. This only works if your SSH server is configured to accept these variables "+
		"via AcceptEnv. Alternatively, if a Bash-like shell runs the command on the remote host, you could prefix the "+
		"command itself with the variables in the form 'VAR=value command'", name)
}

func writers(logged bool, log io.Writer, ws ...io.Writer) io.Writer {
	if logged {
		ws = append(ws, log)
	}
	return io.MultiWriter(ws...)
}

// lineLogger sends each line written to it to the engine as an ephemeral status line.
func lineLogger(log serve.Log) (*io.PipeWriter, <-chan struct{}) {
	r, w := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		scanner := bufio.NewScanner(r)
		scanner.Buffer(make([]byte, 64*1024), 1024*1024)
		for scanner.Scan() {
			log.Status(scanner.Text())
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	// io.Pipe serializes parallel writes: stdout's and stderr's copiers never interleave inside one.
	return w, done
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// connection is a checked `connection` (or its `proxy`), revealed.
type connection struct {
	host, user                 string
	port                       int
	privateKey, agentSocket    *string
	hostKey                    *string
	dialErrorLimit, perDialSec int
	proxy                      *connection
}

func connectionOf(v resource.PropertyValue) (*connection, error) {
	if !v.IsObject() {
		return nil, errors.New("connection is not an object")
	}
	m := v.ObjectValue()
	str := func(k resource.PropertyKey) *string {
		if e, ok := m[k]; ok && e.IsString() {
			s := e.StringValue()
			return &s
		}
		return nil
	}
	num := func(k resource.PropertyKey, def int) int {
		if e, ok := m[k]; ok && e.IsNumber() {
			return int(e.NumberValue())
		}
		return def
	}
	c := &connection{
		user: "root", port: num("port", 22), privateKey: str("privateKey"), agentSocket: str("agentSocketPath"),
		hostKey: str("hostKey"), dialErrorLimit: num("dialErrorLimit", 10), perDialSec: num("perDialTimeout", 15),
	}
	if h := str("host"); h != nil {
		c.host = *h
	}
	if u := str("user"); u != nil {
		c.user = *u
	}
	if p, ok := m["proxy"]; ok && p.IsObject() {
		proxy, err := connectionOf(p)
		if err != nil {
			return nil, err
		}
		c.proxy = proxy
	}
	return c, nil
}

func (c *connection) endpoint() string { return net.JoinHostPort(c.host, strconv.Itoa(c.port)) }

// clientConfig: a pinned host key is checked strictly, and only its algorithm is offered; without one,
// any host key is accepted, as upstream does.
func (c *connection) clientConfig() (*ssh.ClientConfig, error) {
	config := &ssh.ClientConfig{User: c.user, Timeout: time.Duration(c.perDialSec) * time.Second}
	if c.hostKey != nil {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(*c.hostKey))
		if err != nil {
			return nil, fmt.Errorf("failed to parse host key: %w", err)
		}
		config.HostKeyCallback = ssh.FixedHostKey(key)
		config.HostKeyAlgorithms = []string{key.Type()}
	} else {
		config.HostKeyCallback = ssh.InsecureIgnoreHostKey() //nolint:gosec // upstream's behaviour without a hostKey
	}
	if c.privateKey != nil {
		signer, err := ssh.ParsePrivateKey([]byte(*c.privateKey))
		if err != nil {
			return nil, err
		}
		config.Auth = append(config.Auth, ssh.PublicKeys(signer))
	}
	socket := c.agentSocket
	if socket == nil {
		if env := os.Getenv("SSH_AUTH_SOCK"); env != "" {
			socket = &env
		}
	}
	if socket != nil {
		conn, err := net.Dial("unix", *socket)
		if err != nil {
			return nil, err
		}
		config.Auth = append(config.Auth, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
	}
	return config, nil
}

// withRetries calls dial until it succeeds or has failed limit+1 times (-1: no limit), backing off as
// the SDK's retry does, and logs each failed attempt as a status line.
func withRetries[T any](ctx context.Context, what string, limit int, log serve.Log, dial func() (T, error)) (T, error) {
	var last error
	ok, value, err := retry.Until(ctx, retry.Acceptor{
		Accept: func(try int, _ time.Duration) (bool, any, error) {
			v, dialErr := dial()
			if dialErr == nil {
				return true, v, nil
			}
			last = dialErr
			attempts := try + 1
			if limit > -1 && attempts > limit {
				return true, nil, fmt.Errorf("after %d failed attempts: %w", try, dialErr)
			}
			max := "inf"
			if limit != -1 {
				max = strconv.Itoa(limit)
			}
			log.Status(fmt.Sprintf("%s %d/%s failed: retrying", what, attempts, max))
			return false, nil, nil
		},
	})
	var zero T
	if ok && err == nil {
		return value.(T), nil
	}
	if err == nil {
		err = ctx.Err()
		if last != nil {
			err = fmt.Errorf("%w (last attempt: %v)", err, last)
		}
	}
	return zero, err
}

// dialConnection dials the host that a resource's `connection` input names.
func dialConnection(ctx context.Context, props resource.PropertyMap, log serve.Log) (*ssh.Client, error) {
	conn, err := connectionOf(reveal(props["connection"]))
	if err != nil {
		return nil, err
	}
	return conn.dial(ctx, log)
}

func (c *connection) dial(ctx context.Context, log serve.Log) (*ssh.Client, error) {
	config, err := c.clientConfig()
	if err != nil {
		return nil, err
	}
	if c.proxy == nil {
		return withRetries(ctx, "Dial", c.dialErrorLimit, log, func() (*ssh.Client, error) {
			return ssh.Dial("tcp", c.endpoint(), config)
		})
	}
	proxyConfig, err := c.proxy.clientConfig()
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	bastion, err := withRetries(ctx, "Dial proxy", c.proxy.dialErrorLimit, log, func() (*ssh.Client, error) {
		return ssh.Dial("tcp", c.proxy.endpoint(), proxyConfig)
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	tunnel, err := withRetries(ctx, "Dial from proxy", c.dialErrorLimit, log, func() (net.Conn, error) {
		return bastion.Dial("tcp", c.endpoint())
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	type handshake struct {
		conn  ssh.Conn
		chans <-chan ssh.NewChannel
		reqs  <-chan *ssh.Request
	}
	h, err := withRetries(ctx, "Dial", c.dialErrorLimit, log, func() (handshake, error) {
		conn, chans, reqs, err := ssh.NewClientConn(tunnel, c.endpoint(), config)
		return handshake{conn, chans, reqs}, err
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	return ssh.NewClient(h.conn, h.chans, h.reqs), nil
}
