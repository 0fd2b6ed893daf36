package reports

import (
	"encoding/json"
	"reflect"
	"strconv"
	"unicode/utf8"

	"github.com/cordon-gw/cordon/policies"
)

// eventFields lists policies.AccessEvent's fields in order, as appendEvent
// encodes them. When the struct changes, fastJSON turns false and the
// access log falls back to encoding/json, so a new field is never lost.
var eventFields = []string{
	"Time", "ID", "Protocol", "Proto", "User", "Groups", "Location", "ClientIP", "Method", "Host", "Path",
	"Categories", "Threats", "Country", "Action", "RuleAction", "Monitor", "RuleID", "PolicyVersion",
	"Reason", "Status", "BytesUp", "BytesDown", "Latency", "Upstream",
}

var fastJSON = func() bool {
	t := reflect.TypeFor[policies.AccessEvent]()
	if t.NumField() != len(eventFields) {
		return false
	}
	for i, name := range eventFields {
		if t.Field(i).Name != name {
			return false
		}
	}
	return true
}()

// marshalEvent appends ev's JSON (byte-for-byte what encoding/json
// writes) and a newline to b.
func marshalEvent(b []byte, ev *policies.AccessEvent) ([]byte, error) {
	if !fastJSON || ev.Time.Year() < 0 || ev.Time.Year() > 9999 {
		j, err := json.Marshal(ev)
		if err != nil {
			return b, err
		}
		return append(append(b, j...), '\n'), nil
	}
	return append(appendEvent(b, ev), '\n'), nil
}

func appendEvent(b []byte, ev *policies.AccessEvent) []byte {
	b = append(b, `{"time":"`...)
	b = ev.Time.AppendFormat(b, "2006-01-02T15:04:05.999999999Z07:00")
	b = append(b, '"')
	b = appendOptString(b, `,"id":`, ev.ID)
	b = appendField(b, `,"protocol":`, ev.Proto)
	b = appendOptString(b, `,"user":`, ev.User)
	b = appendOptList(b, `,"groups":`, ev.Groups)
	b = appendOptString(b, `,"location":`, ev.Location)
	b = append(b, `,"client_ip":`...)
	var ip [64]byte
	ipText, _ := ev.ClientIP.AppendText(ip[:0])
	b = appendJSONString(b, string(ipText))
	b = appendField(b, `,"method":`, ev.Method)
	b = appendField(b, `,"host":`, ev.Host)
	b = appendOptString(b, `,"path":`, ev.Path)
	b = appendOptList(b, `,"categories":`, ev.Categories)
	b = appendOptList(b, `,"threats":`, ev.Threats)
	b = appendOptString(b, `,"country":`, ev.Country)
	b = appendField(b, `,"action":`, ev.Action)
	b = appendOptString(b, `,"rule_action":`, ev.RuleAction)
	if ev.Monitor {
		b = append(b, `,"monitor":true`...)
	}
	b = appendOptString(b, `,"rule":`, ev.RuleID)
	b = append(b, `,"policy_version":`...)
	b = strconv.AppendInt(b, ev.PolicyVersion, 10)
	b = appendField(b, `,"reason":`, ev.Reason)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(ev.Status), 10)
	b = append(b, `,"bytes_up":`...)
	b = strconv.AppendInt(b, ev.BytesUp, 10)
	b = append(b, `,"bytes_down":`...)
	b = strconv.AppendInt(b, ev.BytesDown, 10)
	b = append(b, `,"latency_ns":`...)
	b = strconv.AppendInt(b, int64(ev.Latency), 10)
	b = append(b, `,"upstream_ns":`...)
	b = strconv.AppendInt(b, int64(ev.Upstream), 10)
	return append(b, '}')
}

func appendField(b []byte, key, v string) []byte {
	return appendJSONString(append(b, key...), v)
}

func appendOptString(b []byte, key, v string) []byte {
	if v == "" {
		return b
	}
	return appendField(b, key, v)
}

func appendOptList(b []byte, key string, l []string) []byte {
	if len(l) == 0 {
		return b
	}
	b = append(b, key...)
	b = append(b, '[')
	for i, s := range l {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, s)
	}
	return append(b, ']')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s exactly as encoding/json does (HTML-safe,
// invalid UTF-8 as U+FFFD, U+2028/U+2029 escaped).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
