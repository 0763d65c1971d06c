package shardcache

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// skeleton is what the test prepare functions write, as an Arrow writer
// would write its magic before the rows.
var skeleton = []byte("ARROW1\x00\x00")

func prepareSkeleton(f *os.File) error {
	_, err := f.Write(skeleton)
	return err
}

func testKey(epoch int) Key {
	return Key{Dataset: "d5a1c0ffee", Pipeline: "9f0e11", Seed: 42, Epoch: epoch}
}

// shardSize gives shards of one epoch different sizes, so a size check
// has something to catch.
func shardSize(shard int) int64 { return 64<<10 + int64(shard)*4096 }

// pattern is the deterministic content of a shard: the skeleton, then
// bytes drawn from a stream seeded by (epoch, shard).
func pattern(k Key, shard int, size int64) []byte {
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(uint64(k.Epoch)+1, uint64(shard)+1))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	copy(b, skeleton)
	return b
}

func openCache(t *testing.T, dir string, opts *Options) *Cache {
	t.Helper()
	c, err := Open(dir, opts)
	if err != nil {
		t.Fatalf("Open(%s) = %v", dir, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// writeShard creates, fills with pattern and commits one shard.
func writeShard(c *Cache, k Key, shard int, size int64) error {
	w, err := c.Create(k, shard, size, prepareSkeleton)
	if err != nil {
		return err
	}
	defer w.Abort()
	copy(w.Data(), pattern(k, shard, size))
	return w.Commit()
}

func mustWrite(t *testing.T, c *Cache, k Key, shard int, size int64) {
	t.Helper()
	if err := writeShard(c, k, shard, size); err != nil {
		t.Fatalf("write shard %d of %v: %v", shard, k, err)
	}
}

// checkShard opens a shard and compares it with pattern.
func checkShard(c *Cache, k Key, shard int, size int64) error {
	m, err := c.Open(k, shard)
	if err != nil {
		return err
	}
	defer m.Release()
	if !bytes.Equal(m.Data(), pattern(k, shard, size)) {
		return errors.New("shard bytes differ from what was written")
	}
	return nil
}

// filesUnder lists the files under dir (relative, slash-separated) whose
// names contain substr.
func filesUnder(t *testing.T, dir, substr string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.Contains(d.Name(), substr) && path != dir {
			rel, _ := filepath.Rel(dir, path)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}
