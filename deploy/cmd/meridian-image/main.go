// Command meridian-image builds Meridian's OCI image from a static binary without a container
// engine (`make image`), as an OCI layout directory and a tarball for `docker load`.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/meridian-obs/meridian/deploy/image"
)

func main() {
	var opts image.Options
	flag.StringVar(&opts.Binary, "binary", "", "static linux meridian binary")
	flag.StringVar(&opts.CABundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM CA bundle for the image's HTTPS clients; empty leaves it out")
	flag.StringVar(&opts.Version, "version", "", "version (org.opencontainers.image.version)")
	flag.StringVar(&opts.Revision, "revision", "", "commit (org.opencontainers.image.revision)")
	flag.StringVar(&opts.Source, "source", "https://github.com/meridian-obs/meridian", "source repository (org.opencontainers.image.source)")
	flag.StringVar(&opts.Arch, "arch", "", "architecture of the binary (default: this machine's)")
	ref := flag.String("ref", "", "image reference, e.g. ghcr.io/meridian-obs/meridian:0.1.0")
	layoutDir := flag.String("oci-layout", "", "write an OCI image layout to this directory")
	tarPath := flag.String("tarball", "", "also write a docker-loadable tarball here")
	flag.Parse()

	opts.Created = time.Unix(0, 0).UTC()
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			fail(fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err))
		}
		opts.Created = time.Unix(sec, 0).UTC()
	}
	if opts.Binary == "" || *ref == "" || *layoutDir == "" {
		fail(fmt.Errorf("--binary, --ref and --oci-layout are required"))
	}
	img, err := image.Build(opts)
	if err != nil {
		fail(err)
	}
	if err := image.WriteLayout(*layoutDir, img, *ref); err != nil {
		fail(err)
	}
	if *tarPath != "" {
		if err := image.WriteTarball(*tarPath, img, *ref); err != nil {
			fail(err)
		}
	}
	d, err := img.Digest()
	if err != nil {
		fail(err)
	}
	fmt.Printf("%s %s -> %s\n", *ref, d, *layoutDir)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "meridian-image:", err)
	os.Exit(1)
}
