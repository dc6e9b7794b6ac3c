package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"github.com/thanos-io/objstore"
	"github.com/thanos-io/thanos/pkg/block"

	"github.com/meridian-obs/meridian/ingest"
)

// s3Server is an S3-protocol server on loopback (gofakes3, in memory) that can hold the first
// upload of a block's index until the test lets it go, so that a node can be killed mid-upload.
type s3Server struct {
	*httptest.Server
	held    chan string // receives the held object's path
	release chan struct{}
	once    sync.Once
}

func startS3(t testing.TB, bucket string) *s3Server {
	t.Helper()
	backend := s3mem.New()
	require.NoError(t, backend.CreateBucket(bucket))
	faker := gofakes3.New(backend).Server()
	s := &s3Server{held: make(chan string, 1), release: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut && strings.HasSuffix(r.URL.Path, "/"+block.IndexFilename) {
			first := false
			s.once.Do(func() { first = true })
			if first {
				s.held <- r.URL.Path
				<-s.release
				http.Error(w, "connection lost", http.StatusInternalServerError)
				return
			}
		}
		faker.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		s.letGo()
		s.Close()
	})
	return s
}

func (s *s3Server) letGo() {
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

// config is the Thanos objstore configuration of bucket on this server.
func (s *s3Server) config(bucket string) string {
	return fmt.Sprintf(`type: S3
config:
  bucket: %s
  endpoint: %s
  region: us-east-1
  access_key: meridian
  secret_key: meridian-secret
  insecure: true
  bucket_lookup_type: path
`, bucket, strings.TrimPrefix(s.URL, "http://"))
}

// localBlocks lists the block directories of a TSDB.
func localBlocks(t testing.TB, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if _, ok := block.IsBlockDir(e.Name()); ok {
			out = append(out, e.Name())
		}
	}
	return out
}

// objectsUnder lists the objects of a block directory in the bucket.
func objectsUnder(t testing.TB, bkt objstore.Bucket, dir string) []string {
	t.Helper()
	var out []string
	require.NoError(t, bkt.Iter(context.Background(), dir, func(name string) error {
		out = append(out, name)
		return nil
	}, objstore.WithRecursiveIter()))
	return out
}

func readObject(t testing.TB, bkt objstore.Bucket, name string) []byte {
	t.Helper()
	r, err := bkt.Get(context.Background(), name)
	require.NoError(t, err)
	defer r.Close()
	data, err := io.ReadAll(r)
	require.NoError(t, err)
	return data
}

// TestStorageS3KillDuringAnUploadThenRestartShipsEveryBlockOnceAndWhole ships to an S3-protocol
// server through objstore's S3 client, kills the node with SIGKILL while a block's index is
// being uploaded (its chunks are in the bucket, its meta.json is not), restarts it, and finds
// every local block in the bucket exactly once with each file equal to the local one; Thanos's
// bucket verify reads the same bucket over S3 and finds nothing wrong.
func TestStorageS3KillDuringAnUploadThenRestartShipsEveryBlockOnceAndWhole(t *testing.T) {
	const hour = int64(time.Hour / time.Millisecond)
	s3 := startS3(t, "meridian")
	conf := s3.config("meridian")
	dir := t.TempDir()
	ext := []string{"region=us-east-1"}
	start := (time.Now().Add(-12*time.Hour).UnixMilli() / (2 * hour)) * (2 * hour)

	node := startIngest(t, dir, ext, "--objstore.config", conf)
	writeHistory(t, node, start, start+7*hour) // cuts [0h,2h) and [2h,4h)
	var heldPath string
	select {
	case heldPath = <-s3.held:
	case <-time.After(time.Minute):
		t.Fatal("no block upload reached the index")
	}
	node.kill9(t)
	s3.letGo()

	bkt, err := ingest.NewBucket(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), []byte(conf))
	require.NoError(t, err)
	defer bkt.Close()
	partial := path.Base(path.Dir(heldPath))
	require.Equal(t, []string{partial + "/chunks/000001"}, objectsUnder(t, bkt, partial), "the killed upload left its chunks only")

	node = startIngest(t, dir, ext, "--objstore.config", conf)
	blocks := localBlocks(t, dir)
	require.Len(t, blocks, 2)
	require.Eventually(t, func() bool {
		for _, id := range blocks {
			if ok, err := bkt.Exists(context.Background(), path.Join(id, block.MetaFilename)); err != nil || !ok {
				return false
			}
		}
		return true
	}, time.Minute, 200*time.Millisecond, "the blocks were not shipped after the restart")

	var inBucket []string
	require.NoError(t, bkt.Iter(context.Background(), "", func(name string) error {
		inBucket = append(inBucket, strings.TrimSuffix(name, "/"))
		return nil
	}))
	require.ElementsMatch(t, blocks, inBucket, "every block once, and no other")
	for _, id := range blocks {
		require.ElementsMatch(t, []string{id + "/chunks/000001", id + "/index", id + "/meta.json"}, objectsUnder(t, bkt, id))
		for _, f := range []string{"index", "chunks/000001"} {
			local, err := os.ReadFile(filepath.Join(dir, id, filepath.FromSlash(f)))
			require.NoError(t, err)
			require.True(t, bytes.Equal(local, readObject(t, bkt, path.Join(id, f))), "block %s: %s differs from the local file", id, f)
		}
	}
	runThanos(t, "tools", "bucket", "verify", "--objstore.config", conf)
	node.stop(t, 30*time.Second)
}
