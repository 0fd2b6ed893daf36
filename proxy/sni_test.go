package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// captureHello returns the TLS records crypto/tls sends first as a client.
func captureHello(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	c1, c2 := net.Pipe()
	defer c2.Close()
	go func() {
		_ = tls.Client(c1, cfg).Handshake()
		c1.Close()
	}()
	hdr := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(c2, hdr); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(c2, body); err != nil {
		t.Fatal(err)
	}
	return append(hdr, body...)
}

func TestParseClientHello(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		want string
	}{
		{"sni", &tls.Config{ServerName: "www.example.com"}, "www.example.com"},
		{"tls12 only", &tls.Config{ServerName: "a.b.c.test", MaxVersion: tls.VersionTLS12}, "a.b.c.test"},
		{"alpn and sni", &tls.Config{ServerName: "x.test", NextProtos: []string{"h2", "http/1.1"}}, "x.test"},
		{"ip has no sni", &tls.Config{ServerName: "192.0.2.1", InsecureSkipVerify: true}, ""},
		{"long name", &tls.Config{ServerName: strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".test"}, strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + ".test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hello := captureHello(t, tc.cfg)
			got, err := parseClientHello(hello)
			if err != nil || got != tc.want {
				t.Fatalf("parseClientHello = %q, %v; want %q", got, err, tc.want)
			}
			// peek leaves every byte in the reader.
			br := bufio.NewReaderSize(bytes.NewReader(hello), maxHelloBuffer)
			got, err = peekClientHello(br)
			if err != nil || got != tc.want {
				t.Fatalf("peekClientHello = %q, %v; want %q", got, err, tc.want)
			}
			rest, _ := io.ReadAll(br)
			if !bytes.Equal(rest, hello) {
				t.Fatalf("peek consumed bytes: %d left of %d", len(rest), len(hello))
			}
			// Every truncation is "short", never a wrong answer or panic.
			for i := 0; i < len(hello); i++ {
				if sni, err := parseClientHello(hello[:i]); err == nil && i > 0 {
					t.Fatalf("truncated at %d parsed as %q", i, sni)
				}
			}
		})
	}
}

// TestChromiumClientHello parses a real browser hello (GREASE, encrypted
// client hello grease, post-quantum key share), captured from Chromium 156
// connecting to https://sni.test/.
func TestChromiumClientHello(t *testing.T) {
	b, err := os.ReadFile("testdata/clienthello-chromium.bin")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseClientHello(b)
	if err != nil || got != "sni.test" {
		t.Fatalf("parseClientHello(chromium) = %q, %v; want sni.test", got, err)
	}
	br := bufio.NewReaderSize(bytes.NewReader(b), maxHelloBuffer)
	if got, err := peekClientHello(br); err != nil || got != "sni.test" {
		t.Fatalf("peekClientHello(chromium) = %q, %v", got, err)
	}
}

// TestClientHelloFragmented splits one hello over several records, as a
// client may.
func TestClientHelloFragmented(t *testing.T) {
	hello := captureHello(t, &tls.Config{ServerName: "frag.example"})
	msg := hello[recordHeaderLen:]
	var b []byte
	for len(msg) > 0 {
		n := min(40, len(msg))
		b = append(b, recordTypeHandshake, 3, 1, byte(n>>8), byte(n))
		b = append(b, msg[:n]...)
		msg = msg[n:]
	}
	got, err := parseClientHello(b)
	if err != nil || got != "frag.example" {
		t.Fatalf("parseClientHello(fragmented) = %q, %v", got, err)
	}
	br := bufio.NewReaderSize(bytes.NewReader(b), maxHelloBuffer)
	if got, err := peekClientHello(br); err != nil || got != "frag.example" {
		t.Fatalf("peekClientHello(fragmented) = %q, %v", got, err)
	}
	if br.Buffered() != len(b) {
		t.Fatalf("peek left %d buffered, want %d", br.Buffered(), len(b))
	}
}

func TestPeekNotTLS(t *testing.T) {
	for _, in := range []string{"GET / HTTP/1.1\r\n\r\n", "SSH-2.0-OpenSSH_9.6\r\n", "\x16\x03\x01\x00\x00"} {
		br := bufio.NewReaderSize(strings.NewReader(in), maxHelloBuffer)
		if _, err := peekClientHello(br); !errors.Is(err, ErrNoClientHello) {
			t.Errorf("peekClientHello(%q) err = %v, want ErrNoClientHello", in, err)
		}
		if br.Buffered() != len(in) {
			t.Errorf("peekClientHello(%q) consumed input", in)
		}
	}
}

// FuzzClientHello: the parser never panics or reads out of bounds, and a
// name it returns is non-empty and bounded; the peeking reader agrees with
// the one-shot parser and consumes nothing.
func FuzzClientHello(f *testing.F) {
	for _, cfg := range []*tls.Config{
		{ServerName: "seed.example"},
		{ServerName: "seed.example", MaxVersion: tls.VersionTLS12},
		{ServerName: "xn--bcher-kva.example", NextProtos: []string{"h2"}},
	} {
		f.Add(captureHello(f, cfg))
	}
	if seeds, err := filepath.Glob("testdata/clienthello-*.bin"); err == nil {
		for _, s := range seeds {
			b, err := os.ReadFile(s)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		sni, err := parseClientHello(b)
		if err == nil && sni != "" && len(sni) > maxHostLen {
			t.Fatalf("name of %d bytes accepted", len(sni))
		}
		br := bufio.NewReaderSize(bytes.NewReader(b), maxHelloBuffer)
		psni, perr := peekClientHello(br)
		if err == nil && (perr != nil || psni != sni) {
			t.Fatalf("peek = %q, %v; parse = %q, %v", psni, perr, sni, err)
		}
		if rest, _ := io.ReadAll(br); !bytes.Equal(rest, b) {
			t.Fatalf("peek consumed input")
		}
	})
}
