package console

import (
	"errors"
	"fmt"
	"io"
	"net/http"
)

// readAllLimit reads the request body up to limit bytes.
func readAllLimit(r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, &APIError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("body larger than %d bytes", mbe.Limit)}
		}
		return nil, &APIError{Status: http.StatusBadRequest, Message: "reading body: " + err.Error()}
	}
	if int64(len(b)) > limit {
		return nil, &APIError{Status: http.StatusRequestEntityTooLarge, Message: fmt.Sprintf("body larger than %d bytes", limit)}
	}
	return b, nil
}
