package dev

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/meridian-obs/meridian/examples"
)

// writeExamples writes the embedded example configuration and SLO specs into dir, keeping their
// relative paths, and returns the configuration file's path. Existing files are overwritten, so
// that a data directory reused across versions gets the current examples.
func writeExamples(dir string) (string, error) {
	err := fs.WalkDir(examples.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(path))
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := examples.FS.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		return "", fmt.Errorf("write example configuration to %s: %w", dir, err)
	}
	return filepath.Join(dir, examples.ConfigFile), nil
}
