package main

import (
	"log/slog"
	"syscall"
	"testing"
)

// TestRaiseFileLimit lowers the soft limit on open files, as a shell's
// `ulimit -Sn 256` does, and checks that raiseFileLimit lifts it to the
// hard limit (SPEC §5: a cold shuffled stream must not run out).
func TestRaiseFileLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	if orig.Max <= 256 {
		t.Skipf("hard limit on open files is %d: nothing to raise to", orig.Max)
	}
	low := syscall.Rlimit{Cur: 256, Max: orig.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	raiseFileLimit(slog.New(slog.DiscardHandler))
	var got syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &got); err != nil {
		t.Fatal(err)
	}
	if got.Cur != orig.Max {
		t.Fatalf("soft limit after raiseFileLimit = %d; want the hard limit %d", got.Cur, orig.Max)
	}
}
