//go:build race

package boltstore

// raceEnabled: the race detector slows compression and JSON down a lot, so
// the heaviest tests use less data under it.
const raceEnabled = true
