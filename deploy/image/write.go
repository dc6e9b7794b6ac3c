package image

import (
	"fmt"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// RefNameAnnotation names an image inside an OCI layout (what `skopeo copy oci:DIR:TAG` and
// `crane push` read as the tag).
const RefNameAnnotation = "org.opencontainers.image.ref.name"

// WriteLayout writes the image as an OCI image layout directory, replacing one that is there,
// with ref the image's tag (e.g. ghcr.io/meridian-obs/meridian:0.1.0).
func WriteLayout(dir string, img v1.Image, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write OCI layout %s: %w", dir, err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{RefNameAnnotation: tag.TagStr()})); err != nil {
		return fmt.Errorf("write OCI layout %s: %w", dir, err)
	}
	return nil
}

// WriteTarball writes the image as a tarball that `docker load` and `podman load` read.
func WriteTarball(path string, img v1.Image, ref string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image reference %q: %w", ref, err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		return fmt.Errorf("write image tarball %s: %w", path, err)
	}
	return nil
}

// OpenLayout returns the image tagged tag (e.g. "0.1.0") in an OCI layout directory.
func OpenLayout(dir, tag string) (v1.Image, error) {
	p, err := layout.FromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("open OCI layout %s: %w", dir, err)
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return nil, err
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var tags []string
	for _, d := range m.Manifests {
		if d.Annotations[RefNameAnnotation] == tag || tag == "" {
			return p.Image(d.Digest)
		}
		tags = append(tags, d.Annotations[RefNameAnnotation])
	}
	return nil, fmt.Errorf("OCI layout %s: no image tagged %q (tags: %v)", dir, tag, tags)
}
