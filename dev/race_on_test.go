//go:build race

package dev

// timeScale stretches the waits of the tests: the race detector slows the whole environment
// (simulator, three TSDBs, querier, PromQL) by several times.
const timeScale = 4
