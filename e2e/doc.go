// Package e2e holds Slipway's end-to-end tests: they build the slipway
// binary, run real `slipway dev` clusters (one process per node, on
// loopback) and drive them through the API, the slipway CLI and the
// unmodified heroku CLI. The tests are in *_test.go files; this package has
// no other code.
package e2e
