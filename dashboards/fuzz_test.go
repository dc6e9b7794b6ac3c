package dashboards

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

// FuzzGrafanaErrorAnswer feeds arbitrary error answers of a Grafana (or of whatever answers at
// --grafana.url) to the transport's decoding: no panic, a bounded one-line-able message, and
// a Retry-After never read as negative.
func FuzzGrafanaErrorAnswer(f *testing.F) {
	f.Add(401, []byte(`{"message":"Unauthorized"}`), "")
	f.Add(412, []byte(`{"message":"The dashboard has been changed by someone else","status":"version-mismatch"}`), "")
	f.Add(429, []byte("slow down"), "3")
	f.Add(503, []byte("<html>bad gateway</html>"), "Wed, 21 Oct 2015 07:28:00 GMT")
	f.Fuzz(func(t *testing.T, status int, body []byte, retryAfterHeader string) {
		if status < 400 || status > 599 {
			return
		}
		resp := &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body))}
		resp.Header.Set("Retry-After", retryAfterHeader)
		e := readAPIError(http.MethodPost, "/api/dashboards/db", resp)
		if e.StatusCode != status {
			t.Fatalf("status %d, want %d", e.StatusCode, status)
		}
		if !strings.HasPrefix(string(bytes.TrimSpace(body)), "{") && len(e.Message) > 203 {
			t.Fatalf("message of %d bytes", len(e.Message))
		}
		_ = e.Error()
		if h := e.Hint(); strings.Contains(h, "\n") {
			t.Fatalf("hint of more than one line: %q", h)
		}
		if d, ok := retryAfter(resp); ok && d < 0 {
			t.Fatalf("negative Retry-After %v", d)
		}
	})
}
