package reports

import (
	"bufio"
	"context"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// rfc5424 matches the header, one SD element and a JSON MSG.
var rfc5424 = regexp.MustCompile(`^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (\S+) (\S+) (\d+) access \[cordon@32473( [a-z_]+="(?:[^"\\\]]|\\["\\\]])*")+\] \{.*\}$`)

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	cfg := testConfig(t)
	cfg.Syslog = SyslogConfig{Address: pc.LocalAddr().String(), Network: "udp", Hostname: "edge 1"}
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	p := newTestPipeline(t, cfg, st, nil)
	evs := genEvents(20, time.Now(), 7)
	evs[0].RuleID = `odd"rule]\`
	evs[0].Action = "block"
	record(p, evs)
	flush(t, p)
	buf := make([]byte, 65536)
	for i := range evs {
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		msg := string(buf[:n])
		m := rfc5424.FindStringSubmatch(msg)
		if m == nil {
			t.Fatalf("message %d is not RFC 5424: %q", i, msg)
		}
		pri, _ := strconv.Atoi(m[1])
		if pri/8 != DefaultSyslogFacility {
			t.Errorf("facility = %d, want %d", pri/8, DefaultSyslogFacility)
		}
		if want := severity(evs[i].Action); pri%8 != want {
			t.Errorf("message %d severity = %d, want %d for %s", i, pri%8, want, evs[i].Action)
		}
		if m[3] != "edge1" || m[4] != "cordon" {
			t.Errorf("hostname/app = %q/%q, want edge1/cordon", m[3], m[4])
		}
		if i == 0 && !strings.Contains(msg, `rule="odd\"rule\]\\"`) {
			t.Errorf("SD value not escaped: %q", msg)
		}
	}
	if got := promtest.ToFloat64(p.m.syslogSent.WithLabelValues("sent")); got != 20 {
		t.Errorf("syslog sent = %v, want 20", got)
	}
}

func TestSyslogTCPFraming(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	msgs := make(chan string, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					lenStr, err := r.ReadString(' ')
					if err != nil {
						return
					}
					n, err := strconv.Atoi(strings.TrimSpace(lenStr))
					if err != nil {
						msgs <- "bad frame " + lenStr
						return
					}
					b := make([]byte, n)
					if _, err := ioReadFull(r, b); err != nil {
						return
					}
					msgs <- string(b)
				}
			}()
		}
	}()
	defer ln.Close()
	cfg := testConfig(t)
	cfg.Syslog = SyslogConfig{Address: ln.Addr().String(), Network: "tcp"}
	st := openLocal(t, cfg.Dir)
	defer st.Close()
	p := newTestPipeline(t, cfg, st, nil)
	evs := genEvents(10, time.Now(), 8)
	record(p, evs)
	flush(t, p)
	for i := range evs {
		select {
		case m := <-msgs:
			if !rfc5424.MatchString(m) {
				t.Fatalf("message %d is not RFC 5424: %q", i, m)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not received", i)
		}
	}
	if err := p.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func ioReadFull(r *bufio.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := r.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestSyslogReconnectsAfterBackoff(t *testing.T) {
	port := 0
	{
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port = ln.Addr().(*net.TCPAddr).Port
		ln.Close() // nobody listens: dials are refused
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	clock := time.Now()
	w := newSyslogWriter(SyslogConfig{Address: addr, Network: "tcp", Facility: 16, AppName: "cordon"}, func() time.Time { return clock })
	defer w.Close()
	ev := genEvents(1, time.Now(), 9)[0]
	if err := w.Send(ev, []byte(`{}`)); err == nil {
		t.Fatal("Send with no listener succeeded")
	}
	if err := w.Send(ev, []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "waiting to reconnect") {
		t.Fatalf("Send during backoff = %v, want a wait-to-reconnect drop", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %d taken meanwhile: %v", port, err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := bufio.NewReader(c).ReadString('}')
		got <- line
	}()
	clock = clock.Add(time.Second) // past the backoff
	if err := w.Send(ev, []byte(`{}`)); err != nil {
		t.Fatalf("Send after the collector is back: %v", err)
	}
	select {
	case m := <-got:
		if !strings.Contains(m, " access [cordon@32473") {
			t.Errorf("received %q", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("message not received after reconnect")
	}
}
