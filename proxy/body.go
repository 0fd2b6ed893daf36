package proxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strconv"
)

// Body relays of the front end. Output collects in a buffer that is
// written out before the relay would block on its input (and when it
// grows past flushAt), so a streaming response leaves as it arrives and a
// small one leaves in a single write together with its head.

const flushAt = 32 << 10

// bodyOut is the writing side of a body relay.
type bodyOut struct {
	c   net.Conn
	tcp *net.TCPConn // c's socket, for splice (nil: not TCP)
	buf []byte       // pending output
	// encode frames each piece of payload as a chunk (a body delimited by
	// the origin's close, sent to an HTTP/1.1 client).
	encode bool
	n      int64 // payload bytes
	// writeFailed: the error came from the writing side.
	writeFailed bool
	// wrote: something was written (a failure can no longer be answered
	// with a response of its own).
	wrote bool
}

func (o *bodyOut) flush() error {
	if len(o.buf) == 0 {
		return nil
	}
	o.wrote = true
	_, err := o.c.Write(o.buf)
	o.buf = o.buf[:0]
	if err != nil {
		o.writeFailed = true
	}
	return err
}

// raw queues framing bytes.
func (o *bodyOut) raw(p []byte) {
	o.buf = append(o.buf, p...)
}

// counted queues payload bytes sent as they are.
func (o *bodyOut) counted(p []byte) {
	o.buf = append(o.buf, p...)
	o.n += int64(len(p))
}

// data queues payload, chunk-framed when encoding.
func (o *bodyOut) data(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	if o.encode {
		o.buf = strconv.AppendInt(o.buf, int64(len(p)), 16)
		o.buf = append(o.buf, '\r', '\n')
		o.buf = append(o.buf, p...)
		o.buf = append(o.buf, '\r', '\n')
	} else {
		o.buf = append(o.buf, p...)
	}
	o.n += int64(len(p))
	if len(o.buf) >= flushAt {
		return o.flush()
	}
	return nil
}

// more makes input available in src, first writing out what is pending.
func more(o *bodyOut, src *wireReader) error {
	if err := o.flush(); err != nil {
		return err
	}
	return src.fill(len(src.buf))
}

// copyLength relays exactly n payload bytes.
func copyLength(o *bodyOut, src *wireReader, n int64) error {
	for n > 0 {
		if src.buffered() == 0 {
			if err := more(o, src); err != nil {
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
		}
		b := src.bytes()
		if int64(len(b)) > n {
			b = b[:n]
		}
		if err := o.data(b); err != nil {
			return err
		}
		src.discard(len(b))
		n -= int64(len(b))
	}
	return nil
}

// copyUntilEOF relays a body delimited by the end of the connection.
func copyUntilEOF(o *bodyOut, src *wireReader) error {
	for {
		if src.buffered() == 0 {
			if err := more(o, src); err != nil {
				if err == io.EOF {
					return nil
				}
				return err
			}
		}
		b := src.bytes()
		if err := o.data(b); err != nil {
			return err
		}
		src.discard(len(b))
	}
}

// maxChunkLine bounds a chunk-size line (with extensions) or trailer line.
const maxChunkLine = 4096

// chunkLine reads one line of chunk framing, writing out pending output
// before waiting for it.
func chunkLine(o *bodyOut, src *wireReader) ([]byte, error) {
	if bytes.IndexByte(src.bytes(), '\n') < 0 {
		if err := o.flush(); err != nil {
			return nil, err
		}
	}
	return src.readLine(maxChunkLine)
}

// relayChunked relays a chunked body. verbatim keeps the framing (chunk
// extensions and trailers included) for an HTTP/1.1 peer; otherwise only
// the payload is sent (to an HTTP/1.0 client, the connection then ends).
func relayChunked(o *bodyOut, src *wireReader, verbatim bool) error {
	for {
		line, err := chunkLine(o, src)
		if err != nil {
			return err
		}
		size, err := parseChunkSize(line)
		if err != nil {
			return err
		}
		if verbatim {
			o.raw(line)
			o.raw([]byte("\r\n"))
		}
		if size == 0 {
			// Trailer section, up to the empty line.
			for {
				line, err := chunkLine(o, src)
				if err != nil {
					return err
				}
				if len(line) > 0 {
					if _, _, err := parseField(line); err != nil {
						return errTrailer
					}
				}
				if verbatim {
					o.raw(line)
					o.raw([]byte("\r\n"))
				}
				if len(line) == 0 {
					return nil
				}
			}
		}
		saved := o.encode
		o.encode = false
		err = copyLength(o, src, size)
		o.encode = saved
		if err != nil {
			return err
		}
		line, err = chunkLine(o, src)
		if err != nil {
			if errors.Is(err, errBadChunk) {
				return errChunkDataEnd
			}
			return err
		}
		if len(line) != 0 {
			return errChunkDataEnd
		}
		if verbatim {
			o.raw([]byte("\r\n"))
		}
	}
}

// parseChunkSize parses "hex-size[;extensions]" (RFC 9112 §7.1) as
// net/http does: hex digits from the first byte up to the extensions or
// to whitespace ending the line, and no control character in the
// extensions (they are forwarded as they are). Fifteen hex digits at
// most, so the size cannot overflow.
func parseChunkSize(line []byte) (int64, error) {
	size := line
	if i := bytes.IndexByte(line, ';'); i >= 0 {
		size = line[:i]
		for _, c := range line[i+1:] {
			if (c < 0x20 && c != '\t') || c == 0x7f {
				return 0, errChunkExt
			}
		}
	} else {
		for len(size) > 0 && (size[len(size)-1] == ' ' || size[len(size)-1] == '\t') {
			size = size[:len(size)-1]
		}
	}
	if len(size) == 0 || len(size) > 15 {
		return 0, errChunkSize
	}
	var n int64
	for _, c := range size {
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | int64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | int64(c-'a'+10)
		case 'A' <= c && c <= 'F':
			n = n<<4 | int64(c-'A'+10)
		default:
			return 0, errChunkSize
		}
	}
	return n, nil
}
