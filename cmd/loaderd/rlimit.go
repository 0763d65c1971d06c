package main

import (
	"log/slog"
	"syscall"
)

// raiseFileLimit lifts the soft limit on open files to the hard limit and
// logs both. A cold shuffled stream writes nearly every shard of its epoch
// at once, besides the dataset files its workers read and the network: the
// usual soft limit of 1024 is soon reached. Go's runtime does the same at
// start on Linux (Go 1.19 on); doing it here keeps the promise whatever
// the runtime, and says the limit the cache sizes its descriptors by
// (shardcache.Options.MaxOpenWriters defaults to a quarter of it).
func raiseFileLimit(logger *slog.Logger) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		logger.Warn("cannot read the open files limit", "err", err)
		return
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			logger.Warn("cannot raise the open files limit", "soft", lim.Cur, "hard", lim.Max, "err", err)
			return
		}
		lim = raised
	}
	logger.Debug("open files limit", "soft", lim.Cur, "hard", lim.Max)
}
