// Package examples holds Meridian's example configuration: the SLO and readiness configuration
// (meridian.yml) and the SLO specs it lists (slos/*.yaml). They are meant to be copied and
// edited; they are also embedded in the binary so that `meridian dev` runs from any directory.
package examples

import "embed"

// ConfigFile is the name of the SLO and readiness configuration inside FS.
const ConfigFile = "meridian.yml"

// FS holds meridian.yml and slos/*.yaml with their paths relative to this directory, so that
// the configuration's relative slo_files patterns resolve once FS is written out as is.
//
//go:embed meridian.yml slos/*.yaml
var FS embed.FS
