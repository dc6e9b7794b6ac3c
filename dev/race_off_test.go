//go:build !race

package dev

// timeScale stretches the waits of the tests; 1 without the race detector.
const timeScale = 1
