package shardcache

import (
	"bufio"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// The verification memo outlives the process, for one boot of the machine.
//
// A shard is checksummed before its first use; a restarted loaderd would
// otherwise read and checksum every shard again before serving it, which
// for a shuffled stream means a whole epoch before its first batch. A file
// that passed once cannot have become torn without a crash of the machine
// (the rename follows fsync), so the memo is kept in dir/verifiedName keyed
// by the kernel's boot id: after a reboot, which is when a torn file can
// appear, every shard is checked again. A file rewritten or replaced since
// (size, inode or mtime changed) is checked again too. The ctime is not
// compared (the memo's column is kept, written as 0): a hard link of a
// Lease changes it without touching the bytes.

const verifiedName = "verified.log"

// bootIDPath is where the kernel publishes this boot's random id; tests
// point it elsewhere to simulate a reboot.
var bootIDPath = "/proc/sys/kernel/random/boot_id"

// stamp identifies a file's content for the verification memo.
type stamp struct {
	ino   uint64
	size  int64
	mtime int64
}

func stampOf(fi fs.FileInfo) stamp {
	s := stamp{size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		s.ino = st.Ino
	}
	return s
}

// bootID returns this boot's id, or "" when it cannot be read (the memo
// then lives only as long as the process).
func bootID() string {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// loadVerified fills c.verified from the memo of this boot, keeping the
// entries whose file still exists with the same stamp, and rewrites the
// memo with only those. Called by Open, under the lock file.
func (c *Cache) loadVerified() {
	c.boot = bootID()
	path := filepath.Join(c.dir, verifiedName)
	if c.boot == "" {
		_ = os.Remove(path)
		return
	}
	var keep []string
	if f, err := os.Open(path); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var boot, rel string
			var st stamp
			var ctime int64 // unused (see above)
			if n, err := fmt.Sscanf(sc.Text(), "%s %s %d %d %d %d", &boot, &rel, &st.ino, &st.size, &st.mtime, &ctime); err != nil || n != 6 || boot != c.boot {
				continue
			}
			full := filepath.Join(c.dir, filepath.FromSlash(rel))
			if fi, err := os.Stat(full); err != nil || stampOf(fi) != st || strings.Contains(rel, "..") {
				continue
			}
			c.verified[full] = st
			keep = append(keep, sc.Text())
		}
		f.Close()
	}
	tmp := path + tmpSuffix
	if err := os.WriteFile(tmp, []byte(strings.Join(append(keep, ""), "\n")), 0o644); err == nil {
		_ = os.Rename(tmp, path)
	}
}

// recordVerified appends a verified file to the memo, under c.vmu (not
// c.mu: readers never wait for the append). A lost line only costs a
// checksum after the next restart.
func (c *Cache) recordVerified(full string, st stamp) {
	if c.boot == "" {
		return
	}
	rel, err := filepath.Rel(c.dir, full)
	if err != nil {
		return
	}
	c.vmu.Lock()
	defer c.vmu.Unlock()
	f, err := os.OpenFile(filepath.Join(c.dir, verifiedName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	fmt.Fprintf(f, "%s %s %d %d %d 0\n", c.boot, filepath.ToSlash(rel), st.ino, st.size, st.mtime)
	f.Close()
}
