package testutil

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Redis is a redis-server process started for one test.
type Redis struct {
	Addr string // host:port on loopback
	Dir  string // working directory (RDB/AOF files when persistent)
	cmd  *exec.Cmd
	port int
	t    testing.TB
}

// URL is the redis:// URL of the server, database 0.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// StartRedis starts redis-server on a free 127.0.0.1 port and stops it when
// the test ends. The test fails (it is never skipped) when redis-server is
// not installed: `make test` installs it.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{Dir: t.TempDir(), t: t}
	r.port = FreePort(t)
	r.start()
	t.Cleanup(r.Stop)
	return r
}

func (r *Redis) start() {
	r.t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		r.t.Fatalf("redis-server not found on PATH (run `make test`, which installs it): %v", err)
	}
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
	r.cmd = exec.Command(bin,
		"--bind", "127.0.0.1", "--port", strconv.Itoa(r.port),
		"--dir", r.Dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always",
		"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning")
	r.cmd.Stdout = os.Stderr
	r.cmd.Stderr = os.Stderr
	if err := r.cmd.Start(); err != nil {
		r.t.Fatalf("start redis-server: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if ping(r.Addr) == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("redis-server on %s did not answer PING within 10s", r.Addr)
}

// Stop kills the server (as an outage would); data written with
// appendfsync always survives a Restart.
func (r *Redis) Stop() {
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
	r.cmd = nil
}

// Restart starts the server again on the same port and directory.
func (r *Redis) Restart() {
	r.t.Helper()
	r.Stop()
	r.start()
}

func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("unexpected reply %q", line)
	}
	return nil
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
