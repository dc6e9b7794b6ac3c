package image

import (
	"archive/tar"
	"debug/elf"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/stretchr/testify/require"
)

// The image under test: MERIDIAN_IMAGE (an OCI layout, `make image` sets it) with the tag
// MERIDIAN_IMAGE_TAG; without them the test builds the binary and the image itself.
func imageUnderTest(t *testing.T) (v1.Image, string) {
	t.Helper()
	if dir := os.Getenv("MERIDIAN_IMAGE"); dir != "" {
		img, err := OpenLayout(dir, os.Getenv("MERIDIAN_IMAGE_TAG"))
		require.NoError(t, err)
		return img, dir
	}
	tmp := t.TempDir()
	bin := filepath.Join(tmp, "meridian")
	build := exec.Command("go", "build", "-tags", "slicelabels", "-trimpath",
		"-ldflags", "-X github.com/prometheus/common/version.Version=0.0.0-test -X github.com/prometheus/common/version.Revision=0123456789abcdef",
		"-o", bin, "./cmd/meridian")
	build.Dir = "../.."
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "%s", out)
	img, err := Build(Options{Binary: bin, Version: "0.0.0-test", Revision: "0123456789abcdef", Created: time.Unix(1700000000, 0).UTC()})
	require.NoError(t, err)
	dir := filepath.Join(tmp, "oci")
	require.NoError(t, WriteLayout(dir, img, "ghcr.io/meridian-obs/meridian:0.0.0-test"))
	img, err = OpenLayout(dir, "0.0.0-test")
	require.NoError(t, err)
	return img, dir
}

func TestImageRunsAsNonRootWithMeridianAsEntrypoint(t *testing.T) {
	img, _ := imageUnderTest(t)

	mt, err := img.MediaType()
	require.NoError(t, err)
	require.Equal(t, types.OCIManifestSchema1, mt)
	m, err := img.Manifest()
	require.NoError(t, err)
	require.Equal(t, types.OCIConfigJSON, m.Config.MediaType)
	require.Len(t, m.Layers, 1, "one layer on an empty base")

	cf, err := img.ConfigFile()
	require.NoError(t, err)
	require.Equal(t, "linux", cf.OS)
	require.NotEmpty(t, cf.Architecture)
	require.Equal(t, "65532:65532", cf.Config.User)
	require.Equal(t, []string{"/usr/bin/meridian"}, cf.Config.Entrypoint)
	require.Empty(t, cf.Config.Cmd)
	require.Contains(t, cf.Config.ExposedPorts, "10901/tcp")
	require.Contains(t, cf.Config.ExposedPorts, "10902/tcp")
	require.Equal(t, "meridian", cf.Config.Labels[LabelTitle])
	version, revision := cf.Config.Labels[LabelVersion], cf.Config.Labels[LabelRevision]
	require.NotEmpty(t, version)
	require.NotEmpty(t, revision)
	created, err := time.Parse(time.RFC3339, cf.Config.Labels[LabelCreated])
	require.NoError(t, err)
	require.True(t, created.Equal(cf.Created.Time), "created label %s, config %s", created, cf.Created)

	// Unpack the layer as a runtime would, and run the binary from it.
	root := t.TempDir()
	files := unpack(t, mutate.Extract(img), root)
	require.Contains(t, files, "usr/bin/meridian")
	info, err := os.Stat(filepath.Join(root, "usr/bin/meridian"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o755), info.Mode().Perm())

	f, err := elf.Open(filepath.Join(root, "usr/bin/meridian"))
	require.NoError(t, err)
	for _, p := range f.Progs {
		require.NotEqual(t, elf.PT_INTERP, p.Type, "the binary must be static: an empty base has no dynamic loader")
	}
	require.NoError(t, f.Close())

	out, err := exec.Command(filepath.Join(root, "usr/bin/meridian"), "--version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "meridian, version "+version)
	require.Contains(t, string(out), "revision: "+revision)
}

// unpack writes the flattened filesystem of the image into root and returns its paths.
func unpack(t *testing.T, rc io.ReadCloser, root string) map[string]os.FileMode {
	t.Helper()
	defer rc.Close()
	files := map[string]os.FileMode{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		require.NoError(t, err)
		name := filepath.Clean(h.Name)
		require.False(t, strings.HasPrefix(name, ".."), "path escapes the root: %s", h.Name)
		target := filepath.Join(root, name)
		switch h.Typeflag {
		case tar.TypeDir:
			require.NoError(t, os.MkdirAll(target, 0o755))
		case tar.TypeReg:
			require.NoError(t, os.MkdirAll(filepath.Dir(target), 0o755))
			w, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, os.FileMode(h.Mode).Perm())
			require.NoError(t, err)
			_, err = io.Copy(w, tr)
			require.NoError(t, err)
			require.NoError(t, w.Close())
		default:
			t.Fatalf("unexpected entry %s of type %c", h.Name, h.Typeflag)
		}
		files[strings.TrimSuffix(filepath.ToSlash(name), "/")] = os.FileMode(h.Mode)
	}
}
