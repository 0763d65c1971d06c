package loader

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Noticing that a served dataset changed (SPEC §4: within 5 s on a local
// file system). Run's watcher has inotify (fsnotify) watch every directory
// whose entries make a listing (Dataset.dirs): an ImageFolder's root and
// every directory under its classes, a manifest's directory and those of
// its samples. A change in one of them relists its dataset once the
// directory has been quiet for settleDelay (a copy of a thousand files is
// one relisting), and at the latest settleMax after the first change.
// Network file systems notify no change made by another host: there,
// Options.RescanInterval relists every dataset periodically, and the rescan
// action relists at once. Whatever the watcher misses, a request never
// reads a file that does not match its listing (read.go).

// Watcher timing.
const (
	settleDelay = 250 * time.Millisecond
	settleMax   = 2 * time.Second
)

// pendingChange is a dataset with changes not yet relisted.
type pendingChange struct{ first, last time.Time }

// watch runs the watcher and the periodic rescan until ctx is done.
func (l *Loader) watch(ctx context.Context) error {
	var tick <-chan time.Time
	if l.opts.RescanInterval > 0 {
		t := time.NewTicker(l.opts.RescanInterval)
		defer t.Stop()
		tick = t.C
	}
	var w *fsnotify.Watcher
	if !l.noNotify {
		var err error
		if w, err = fsnotify.NewWatcher(); err != nil {
			l.log.Warn("loader: no change notification; datasets are listed again only every --rescan-interval and on the rescan action", "err", err)
			w = nil
		} else {
			defer w.Close()
		}
	}
	ws := &watchSet{l: l, w: w, owners: map[string][]string{}}
	for _, name := range l.names {
		ws.sync(name)
	}
	if w != nil {
		// What changed between New's listing and the watches is listed now.
		for _, name := range l.names {
			l.relistWatched(ws, name, "watching started")
		}
	}
	var events <-chan fsnotify.Event
	var errs <-chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	pending := map[string]*pendingChange{}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	arm := func(d time.Duration) {
		if !armed {
			timer.Reset(d)
			armed = true
		}
	}
	changed := func(name string) {
		now := time.Now()
		p := pending[name]
		if p == nil {
			p = &pendingChange{first: now}
			pending[name] = p
		}
		p.last = now
		arm(settleDelay)
	}
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			for _, name := range ws.datasetsOf(ev.Name) {
				changed(name)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			// A lost event (the kernel's queue overflowed) may be any change.
			l.log.Warn("loader: change notification", "err", err)
			for _, name := range l.names {
				changed(name)
			}
		case <-tick:
			for _, name := range l.names {
				l.relistWatched(ws, name, "rescan interval")
			}
		case <-timer.C:
			armed = false
			now := time.Now()
			next := settleDelay
			for name, p := range pending {
				if quiet := now.Sub(p.last); quiet < settleDelay && now.Sub(p.first) < settleMax {
					next = min(next, settleDelay-quiet, settleMax-now.Sub(p.first))
					continue
				}
				delete(pending, name)
				if l.relistWatched(ws, name, "files changed") {
					changed(name) // new directories: list again what landed before their watch
				}
			}
			if len(pending) > 0 {
				arm(max(next, 10*time.Millisecond))
			}
		}
	}
}

// relistWatched relists dataset name and updates the watches to its
// directories; it reports whether it added a watch.
func (l *Loader) relistWatched(ws *watchSet, name, why string) bool {
	_, _ = l.relist(l.sets[name], why) // a failure is logged and keeps the listing
	return ws.sync(name)
}

// A watchSet is the directories the watcher watches, and whose listing
// each belongs to. It is the watch goroutine's alone.
type watchSet struct {
	l      *Loader
	w      *fsnotify.Watcher   // nil: no change notification
	owners map[string][]string // watched directory → dataset names
	warned bool                // the watch limit was reported
}

// datasetsOf returns the datasets an event at path may change: those of
// its directory, or of path itself when it is a watched directory.
func (ws *watchSet) datasetsOf(path string) []string {
	names := slices.Clone(ws.owners[path])
	for _, n := range ws.owners[filepath.Dir(path)] {
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// sync makes the watches match the directories of dataset name's last
// listing; it reports whether it added one.
func (ws *watchSet) sync(name string) bool {
	s := ws.l.sets[name]
	s.mu.Lock()
	dirs := slices.Clone(s.dirs)
	s.mu.Unlock()
	want := make(map[string]bool, len(dirs))
	for _, d := range dirs {
		want[d] = true
	}
	added := false
	for _, d := range dirs {
		if slices.Contains(ws.owners[d], name) {
			continue
		}
		if len(ws.owners[d]) == 0 && ws.w != nil {
			if err := ws.w.Add(d); err != nil {
				ws.warnAdd(d, err)
				continue
			}
		}
		ws.owners[d] = append(ws.owners[d], name)
		added = true
	}
	for d, names := range ws.owners {
		if want[d] || !slices.Contains(names, name) {
			continue
		}
		names = slices.DeleteFunc(names, func(n string) bool { return n == name })
		if len(names) == 0 {
			delete(ws.owners, d)
			if ws.w != nil {
				_ = ws.w.Remove(d) // gone with its directory, often
			}
			continue
		}
		ws.owners[d] = names
	}
	return added
}

// warnAdd reports a directory that cannot be watched, once for the watch
// limit.
func (ws *watchSet) warnAdd(dir string, err error) {
	if errors.Is(err, syscall.ENOSPC) {
		if !ws.warned {
			ws.warned = true
			ws.l.log.Warn("loader: inotify watch limit reached; changes under further directories are noticed only by --rescan-interval or the rescan action (raise fs.inotify.max_user_watches)", "dir", dir)
		}
		return
	}
	if !errors.Is(err, syscall.ENOENT) { // removed since the listing: the next event relists
		ws.l.log.Warn("loader: cannot watch a dataset directory", "dir", dir, "err", err)
	}
}
