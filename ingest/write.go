package ingest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/klauspost/compress/snappy"
	remoteapi "github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/storage/remote"
)

// writeHandler receives remote write. Both protocols are decoded, checked and appended in one
// pass over the body (v1Decoder, v2Decoder), with the answers of Prometheus's receiver; what
// content negotiation refuses (415) is answered by Prometheus's handler. This layer
//   - limits the body size (413, as Thanos Receive answers),
//   - refuses bodies that are not snappy or not a well-formed remote-write message (400),
//   - refuses RW2 bodies whose metadata refers outside the symbols table, which would make
//     Prometheus's handler panic,
//   - answers RW1 requests with invalid or duplicate labels (to which Prometheus gives a silent
//     2xx) with a 400 naming the series (the valid series of the request are stored, as with
//     RW2 partial writes and Thanos Receive; the invalid ones never reach the TSDB),
//   - keeps RW1 metadata messages and RW2 series metadata (metadata.go), and answers bad
//     metadata and exemplars with a 400 naming them, the rest of the request being stored,
//   - counts samples received and rejected by reason.
type writeHandler struct {
	logger  *slog.Logger
	maxBody int64
	app     countingAppendable
	next    http.Handler
	metrics *metrics
	meta    *metadataStore

	buffers   sync.Pool // *[]byte for decompressed bodies
	summaries sync.Pool // *writeSummary
	notes     sync.Pool // *writeNotes
}

// acceptedMessages are the remote-write protocols the receiver speaks.
var acceptedMessages = remoteapi.MessageTypes{remoteapi.WriteV1MessageType, remoteapi.WriteV2MessageType}

// newWriteHandler is the remote-write receiver; keepExemplars says the TSDB has exemplar
// storage (exemplars are otherwise checked, and dropped).
func newWriteHandler(logger *slog.Logger, reg prometheus.Registerer, app storage.Appendable, maxBody int64, m *metrics, meta *metadataStore, keepExemplars bool) http.Handler {
	h := &writeHandler{
		logger:  logger,
		maxBody: maxBody,
		app:     countingAppendable{db: app, metrics: m, meta: meta, exemplars: keepExemplars},
		metrics: m,
		meta:    meta,
	}
	// Only for the answers of content negotiation: every accepted request is decoded here.
	h.next = remote.NewWriteHandler(logger, reg, h.app, acceptedMessages, false, false, true)
	h.buffers.New = func() any { return new([]byte) }
	h.summaries.New = func() any { return new(writeSummary) }
	h.notes.New = func() any { return new(writeNotes) }
	return promhttp.InstrumentHandlerDuration(m.requestDuration, promhttp.InstrumentHandlerCounter(m.requests, h))
}

func (h *writeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "Method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if r.ContentLength > h.maxBody {
		h.refuse(w, "too_large", http.StatusRequestEntityTooLarge, fmt.Sprintf("write request too large: body of %d bytes exceeds the limit of %d bytes", r.ContentLength, h.maxBody))
		return
	}
	var body bytes.Buffer
	if r.ContentLength > 0 {
		body.Grow(int(r.ContentLength))
	}
	if _, err := body.ReadFrom(io.LimitReader(r.Body, h.maxBody+1)); err != nil {
		h.refuse(w, "malformed", http.StatusBadRequest, fmt.Sprintf("read request body: %v", err))
		return
	}
	if int64(body.Len()) > h.maxBody {
		h.refuse(w, "too_large", http.StatusRequestEntityTooLarge, fmt.Sprintf("write request too large: body exceeds the limit of %d bytes", h.maxBody))
		return
	}
	compressed := body.Bytes()
	r.Body = io.NopCloser(bytes.NewReader(compressed))

	// Content negotiation errors (415) are Prometheus's handler's to give.
	enc := r.Header.Get("Content-Encoding")
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/x-protobuf"
	}
	msgType, err := remoteapi.ParseProtoMsg(ct)
	if (enc != "" && enc != string(remoteapi.SnappyBlockCompression)) || err != nil || !acceptedMessages.Contains(msgType) {
		h.next.ServeHTTP(w, r)
		return
	}

	size, err := snappy.DecodedLen(compressed)
	if err != nil {
		h.refuse(w, "not_snappy", http.StatusBadRequest, fmt.Sprintf("body is not snappy-compressed: %v", err))
		return
	}
	if int64(size) > h.maxBody {
		h.refuse(w, "too_large", http.StatusRequestEntityTooLarge, fmt.Sprintf("write request too large: decompressed body of %d bytes exceeds the limit of %d bytes", size, h.maxBody))
		return
	}
	bufp := h.buffers.Get().(*[]byte)
	defer h.buffers.Put(bufp)
	if cap(*bufp) < size {
		*bufp = make([]byte, size)
	}
	decoded, err := snappy.Decode((*bufp)[:cap(*bufp)], compressed)
	if err != nil {
		h.refuse(w, "not_snappy", http.StatusBadRequest, fmt.Sprintf("body is not snappy-compressed: %v", err))
		return
	}

	sum := h.summaries.Get().(*writeSummary)
	defer h.summaries.Put(sum)
	sum.reset()
	notes := h.notes.Get().(*writeNotes)
	defer h.notes.Put(notes)
	notes.reset()
	r = r.WithContext(withWriteNotes(r.Context(), notes))
	if msgType == remoteapi.WriteV1MessageType {
		h.serveV1(w, r, decoded, sum, notes)
		return
	}
	h.serveV2(w, r, decoded, sum, notes)
}

// problemText is the 400 answer's reason for what a request had refused: series, metadata,
// exemplars; empty when nothing was.
func (h *writeHandler) problemText(sum *writeSummary, notes *writeNotes) string {
	var series string
	if sum.nProblems > 0 {
		series = sum.problemText()
	}
	text := notes.text()
	if text != "" {
		h.logger.Warn("remote write with invalid metadata or exemplars", "problems", text)
	}
	return joinNonEmpty(series, text)
}

// serveV1 decodes and appends an RW1 body, keeps its metadata messages, and answers as
// Prometheus's handler would, with the refused series, metadata and exemplars named.
func (h *writeHandler) serveV1(w http.ResponseWriter, r *http.Request, body []byte, sum *writeSummary, notes *writeNotes) {
	app := h.app.appender(r.Context())
	d := newV1Decoder(sum, time.Now())
	d.keepExemplars = h.app.exemplars
	err := d.decode(body, app)
	if !errors.Is(err, errMalformed) {
		// Metadata messages stand apart from the samples (Prometheus sends them every minute,
		// alone): they are kept even when a sample fails the request.
		if merr := h.storeV1Metadata(body, notes); merr != nil {
			err = merr
		}
	}
	if errors.Is(err, errMalformed) {
		app.discard()
		h.refuseMalformed(w, remoteapi.WriteV1MessageType, err)
		return
	}
	h.countReceived(sum)
	app.countUnkept()
	if d.exemplarsDropped > 0 {
		h.logger.Debug("remote write exemplars dropped", "exemplars", d.exemplarsDropped)
	}
	var aerr *appendError
	if errors.As(err, &aerr) {
		_ = app.Rollback()
		code := aerr.status()
		if code/100 == 5 {
			h.logger.Error("remote write append failed", "err", err)
		}
		http.Error(w, err.Error(), code)
		return
	}
	if err := app.Commit(); err != nil {
		h.logger.Error("remote write commit failed", "err", err)
		http.Error(w, fmt.Sprintf("commit: %v", err), http.StatusInternalServerError)
		return
	}
	if sum.nProblems > 0 {
		h.logger.Warn("remote write with invalid series", "series", sum.nProblems, "first", sum.problems[0])
	}
	if text := h.problemText(sum, notes); text != "" {
		http.Error(w, text, http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// serveV2 decodes and appends an RW2 body, and answers as Prometheus's handler would: what was
// refused for good is named in a 400, the rest stored; the written counts go in the
// X-Prometheus-Remote-Write-*-Written headers, zero when nothing was stored.
func (h *writeHandler) serveV2(w http.ResponseWriter, r *http.Request, body []byte, sum *writeSummary, notes *writeNotes) {
	app := h.app.appender(r.Context())
	d := newV2Decoder(sum, notes, time.Now())
	d.keepExemplars = h.app.exemplars
	err := d.decode(body, app)
	if errors.Is(err, errMalformed) {
		app.discard()
		writtenHeaders(w, remoteapi.WriteResponseStats{})
		h.refuseMalformed(w, remoteapi.WriteV2MessageType, err)
		return
	}
	h.countReceived(sum)
	app.countUnkept()
	if d.exemplarsInvalid > 0 {
		h.metrics.exemplarsRejected.WithLabelValues(reasonExemplarInvalid).Add(float64(d.exemplarsInvalid))
	}
	if d.exemplarsDropped > 0 {
		h.logger.Debug("remote write exemplars dropped", "exemplars", d.exemplarsDropped)
	}
	if err != nil {
		_ = app.Rollback()
		h.logger.Error("remote write append failed", "err", err)
		writtenHeaders(w, remoteapi.WriteResponseStats{})
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := app.Commit(); err != nil {
		h.logger.Error("remote write commit failed", "err", err)
		writtenHeaders(w, remoteapi.WriteResponseStats{})
		http.Error(w, fmt.Sprintf("commit: %v", err), http.StatusInternalServerError)
		return
	}
	writtenHeaders(w, d.stats)
	if sum.nProblems > 0 {
		h.logger.Warn("remote write with invalid series", "series", sum.nProblems, "first", sum.problems[0])
	}
	refused := d.refused.text("samples")
	if refused != "" {
		h.logger.Warn("remote write samples refused", "problems", refused)
	}
	if text := joinNonEmpty(refused, h.problemText(sum, notes)); text != "" {
		http.Error(w, text, http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// writtenHeaders sets the RW2 answer's counts of what was stored, as Prometheus's receiver does.
func writtenHeaders(w http.ResponseWriter, s remoteapi.WriteResponseStats) {
	h := w.Header()
	h.Set("X-Prometheus-Remote-Write-Samples-Written", strconv.Itoa(s.Samples))
	h.Set("X-Prometheus-Remote-Write-Histograms-Written", strconv.Itoa(s.Histograms))
	h.Set("X-Prometheus-Remote-Write-Exemplars-Written", strconv.Itoa(s.Exemplars))
}

func (h *writeHandler) refuseMalformed(w http.ResponseWriter, msgType remoteapi.WriteMessageType, err error) {
	if !errors.Is(err, errMalformed) {
		err = fmt.Errorf("%w: %w", errMalformed, err)
	}
	h.refuse(w, "malformed", http.StatusBadRequest, fmt.Sprintf("decode %s remote write request: %v", msgType, err))
}

// countReceived counts the samples of a well-formed request, and those refused for their labels.
func (h *writeHandler) countReceived(sum *writeSummary) {
	h.metrics.samplesReceived.Add(float64(sum.samples))
	for reason, n := range sum.rejected {
		h.metrics.samplesRejected.WithLabelValues(string(reason)).Add(float64(n))
	}
}

func (h *writeHandler) refuse(w http.ResponseWriter, reason string, code int, msg string) {
	h.metrics.requestsRejected.WithLabelValues(reason).Inc()
	h.logger.Debug("remote write refused", "reason", reason, "code", code, "err", msg)
	http.Error(w, msg, code)
}

func (s *writeSummary) reset() {
	s.samples, s.exemplars, s.nProblems = 0, 0, 0
	clear(s.rejected)
	s.problems = s.problems[:0]
}
