package store

func cleanupBenchFiles() {}
