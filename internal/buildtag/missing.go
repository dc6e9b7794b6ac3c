//go:build !slicelabels

package buildtag

// Building without the tag stops here with "undefined: meridian_must_be_built_with_tags_slicelabels".
// Use the Makefile, or pass -tags slicelabels to go build / go test.
const Slicelabels = meridian_must_be_built_with_tags_slicelabels
