package reports

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/cordon-gw/cordon/policies"
)

// sdID is the structured-data ID of Cordon's SD element. 32473 is the
// private enterprise number RFC 5612 reserves for documentation.
const sdID = "cordon@32473"

// syslogWriter sends RFC 5424 messages over UDP (one datagram each) or TCP
// (octet-counted framing, RFC 6587 section 3.4.1). It never blocks the
// worker for long: TCP writes have a one-second deadline, and after a
// failure it waits (capped backoff) before dialing again, dropping
// messages meanwhile.
type syslogWriter struct {
	network, addr string
	facility      int
	app, host     string
	procID        string
	now           func() time.Time

	conn      net.Conn
	nextDial  time.Time
	backoff   time.Duration
	buf       []byte
	lastError error
}

const maxUDPMessage = 8192

func newSyslogWriter(cfg SyslogConfig, now func() time.Time) *syslogWriter {
	host := cfg.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	return &syslogWriter{
		network: cfg.Network, addr: cfg.Address, facility: cfg.Facility,
		app: headerField(cfg.AppName, 48), host: headerField(host, 255),
		procID: strconv.Itoa(os.Getpid()), now: now,
	}
}

// headerField makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most max bytes, "-" when empty.
func headerField(s string, max int) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s) && len(b) < max; i++ {
		if c := s[i]; c > 32 && c < 127 {
			b = append(b, c)
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}

func severity(action string) int {
	switch action {
	case "block":
		return 4 // warning
	case "warn":
		return 5 // notice
	default:
		return 6 // informational
	}
}

// appendSDValue escapes '"', '\' and ']' as RFC 5424 section 6.3.3 asks.
func appendSDValue(b []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '"', '\\', ']':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return b
}

// format builds one message: header, one SD element with the fields a
// SIEM filters on, and the event's JSON as MSG.
func (s *syslogWriter) format(ev *policies.AccessEvent, jsonLine []byte) []byte {
	b := s.buf[:0]
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(s.facility*8+severity(ev.Action)), 10)
	b = append(b, ">1 "...)
	t := ev.Time
	if t.IsZero() {
		t = s.now()
	}
	b = t.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, s.host...)
	b = append(b, ' ')
	b = append(b, s.app...)
	b = append(b, ' ')
	b = append(b, s.procID...)
	b = append(b, " access ["...)
	b = append(b, sdID...)
	for _, kv := range [...][2]string{
		{"action", ev.Action}, {"rule", ev.RuleID}, {"user", ev.User},
		{"location", ev.Location}, {"host", ev.Host}, {"protocol", ev.Proto},
	} {
		if kv[1] == "" {
			continue
		}
		b = append(b, ' ')
		b = append(b, kv[0]...)
		b = append(b, `="`...)
		b = appendSDValue(b, kv[1])
		b = append(b, '"')
	}
	b = append(b, "] "...)
	b = append(b, strings.TrimRight(string(jsonLine), "\n")...)
	s.buf = b
	return b
}

// Send formats and sends one event; an error means it was dropped.
func (s *syslogWriter) Send(ev *policies.AccessEvent, jsonLine []byte) error {
	msg := s.format(ev, jsonLine)
	if s.conn == nil {
		if now := s.now(); now.Before(s.nextDial) {
			return fmt.Errorf("reports: syslog: waiting to reconnect: %w", s.lastError)
		}
		c, err := net.DialTimeout(s.network, s.addr, time.Second)
		if err != nil {
			s.fail(err)
			return fmt.Errorf("reports: syslog: dial %s: %w", s.addr, err)
		}
		s.conn = c
	}
	var err error
	if s.network == "udp" {
		if len(msg) > maxUDPMessage {
			msg = msg[:maxUDPMessage]
		}
		_, err = s.conn.Write(msg)
	} else {
		_ = s.conn.SetWriteDeadline(s.now().Add(time.Second))
		frame := strconv.AppendInt(make([]byte, 0, len(msg)+8), int64(len(msg)), 10)
		frame = append(frame, ' ')
		frame = append(frame, msg...)
		_, err = s.conn.Write(frame)
	}
	if err != nil {
		_ = s.conn.Close()
		s.conn = nil
		s.fail(err)
		return fmt.Errorf("reports: syslog: write: %w", err)
	}
	s.backoff = 0
	return nil
}

func (s *syslogWriter) fail(err error) {
	s.lastError = err
	switch {
	case s.backoff == 0:
		s.backoff = 100 * time.Millisecond
	case s.backoff < 30*time.Second:
		s.backoff *= 2
	}
	s.nextDial = s.now().Add(s.backoff)
}

// Close closes the connection.
func (s *syslogWriter) Close() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
