// Package image builds Meridian's OCI image without a container engine: an empty base, one layer
// with the static binary (and the CA bundle that HTTPS clients need), user 65532, the binary as
// entrypoint and the OCI labels of the build. The same image as the Dockerfile builds on top of
// distroless/static, for machines and CI jobs that have no Docker or Podman.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Paths inside the image, and the user it runs as (distroless's "nonroot").
const (
	BinaryPath = "/usr/bin/meridian"
	CAPath     = "/etc/ssl/certs/ca-certificates.crt"
	User       = "65532:65532"
)

// OCI label keys (https://github.com/opencontainers/image-spec/blob/main/annotations.md).
const (
	LabelTitle    = "org.opencontainers.image.title"
	LabelVersion  = "org.opencontainers.image.version"
	LabelRevision = "org.opencontainers.image.revision"
	LabelCreated  = "org.opencontainers.image.created"
	LabelSource   = "org.opencontainers.image.source"
	LabelLicenses = "org.opencontainers.image.licenses"
)

// Options describe the build.
type Options struct {
	Binary   string // the static linux binary
	CABundle string // PEM CA bundle copied to CAPath; empty leaves it out
	Version  string
	Revision string
	Source   string
	// Created is the image's creation time and every file's mtime, so that one commit gives one
	// image digest (set it from SOURCE_DATE_EPOCH or the commit time).
	Created time.Time
	Arch    string // default: this machine's GOARCH
}

// Build assembles the image.
func Build(opts Options) (v1.Image, error) {
	if opts.Version == "" || opts.Revision == "" {
		return nil, fmt.Errorf("build image: version and revision are required")
	}
	if opts.Arch == "" {
		opts.Arch = runtime.GOARCH
	}
	layerTar, err := layerContents(opts)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("build image: layer: %w", err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer, History: v1.History{
		Created:   v1.Time{Time: opts.Created},
		CreatedBy: "meridian-image: " + BinaryPath,
		Comment:   "static meridian binary",
	}})
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = opts.Arch
	cf.OS = "linux"
	cf.Created = v1.Time{Time: opts.Created}
	cf.Config.User = User
	cf.Config.Entrypoint = []string{BinaryPath}
	cf.Config.Cmd = nil
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/usr/bin:/bin"}
	cf.Config.ExposedPorts = map[string]struct{}{"10901/tcp": {}, "10902/tcp": {}}
	cf.Config.Labels = map[string]string{
		LabelTitle:    "meridian",
		LabelVersion:  opts.Version,
		LabelRevision: opts.Revision,
		LabelCreated:  opts.Created.UTC().Format(time.RFC3339),
		LabelLicenses: "Apache-2.0",
	}
	if opts.Source != "" {
		cf.Config.Labels[LabelSource] = opts.Source
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("build image: config: %w", err)
	}
	return mutate.CreatedAt(img, v1.Time{Time: opts.Created})
}

// layerContents is the layer's tar: the directories, the binary and the CA bundle, owned by root
// and not writable by the image's user.
func layerContents(opts Options) ([]byte, error) {
	bin, err := os.ReadFile(opts.Binary)
	if err != nil {
		return nil, fmt.Errorf("build image: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dir := func(name string, mode int64) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: opts.Created, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: opts.Created, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, d := range []string{"usr/", "usr/bin/", "etc/", "etc/ssl/", "etc/ssl/certs/"} {
		if err := dir(d, 0o755); err != nil {
			return nil, err
		}
	}
	// /tmp for a container run without a tmpfs there (the chart mounts an emptyDir).
	if err := dir("tmp/", 0o1777); err != nil {
		return nil, err
	}
	if err := file(BinaryPath[1:], 0o755, bin); err != nil {
		return nil, err
	}
	if opts.CABundle != "" {
		ca, err := os.ReadFile(opts.CABundle)
		if err != nil {
			return nil, fmt.Errorf("build image: CA bundle: %w", err)
		}
		if err := file(CAPath[1:], 0o644, ca); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
