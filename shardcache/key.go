package shardcache

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// A Key names an epoch entry: the augmented samples of one epoch of one
// dataset under one pipeline and seed. Dataset and Pipeline are
// fingerprints (hex strings).
type Key struct {
	Dataset  string
	Pipeline string
	Seed     uint64
	Epoch    int
}

// String returns a readable form of k for logs and errors.
func (k Key) String() string {
	return fmt.Sprintf("dataset=%s pipeline=%s seed=%d epoch=%d", k.Dataset, k.Pipeline, k.Seed, k.Epoch)
}

// dirName is the name of k's epoch directory: a hash of every field, so a
// changed dataset, pipeline or seed never meets an old entry.
func (k Key) dirName() string {
	h := sha256.New()
	for _, f := range []string{k.Dataset, k.Pipeline, strconv.FormatUint(k.Seed, 10), strconv.Itoa(k.Epoch)} {
		// Length-prefixed, so no two keys encode alike.
		fmt.Fprintf(h, "%d:%s;", len(f), f)
	}
	return "e-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// isEpochDirName reports whether name has the form dirName produces.
func isEpochDirName(name string) bool {
	hexPart, ok := strings.CutPrefix(name, "e-")
	if !ok || len(hexPart) != 32 {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil
}

const metaName = "meta.json"

// meta is the content of an epoch directory's meta.json.
type meta struct {
	Dataset  string `json:"dataset"`
	Pipeline string `json:"pipeline"`
	Seed     uint64 `json:"seed"`
	Epoch    int    `json:"epoch"`
}

// writeMeta writes dir/meta.json atomically (WriteAtomic).
func writeMeta(dir string, k Key) error {
	b, err := json.Marshal(meta{Dataset: k.Dataset, Pipeline: k.Pipeline, Seed: k.Seed, Epoch: k.Epoch})
	if err != nil {
		return fmt.Errorf("shardcache: encode meta of %v: %w", k, err)
	}
	if err := WriteAtomic(filepath.Join(dir, metaName), b); err != nil {
		return fmt.Errorf("shardcache: write meta of %v: %w", k, err)
	}
	return nil
}

// readMeta reads the key recorded in dir/meta.json.
func readMeta(dir string) (Key, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaName))
	if err != nil {
		return Key{}, err
	}
	var m meta
	if err := json.Unmarshal(b, &m); err != nil {
		return Key{}, err
	}
	return Key{Dataset: m.Dataset, Pipeline: m.Pipeline, Seed: m.Seed, Epoch: m.Epoch}, nil
}

const (
	tmpSuffix   = ".tmp"
	shardPrefix = "shard-"
	shardSuffix = ".arrow"
)

// shardName is the final name of a committed shard.
func shardName(shard int, crc uint32) string {
	return fmt.Sprintf("%s%06d.%08x%s", shardPrefix, shard, crc, shardSuffix)
}

// parseShardName parses a name shardName produced.
func parseShardName(name string) (shard int, crc uint32, ok bool) {
	rest, ok1 := strings.CutPrefix(name, shardPrefix)
	rest, ok2 := strings.CutSuffix(rest, shardSuffix)
	num, sum, ok3 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || !ok3 || len(num) < 6 || len(sum) != 8 {
		return 0, 0, false
	}
	n, err := strconv.ParseUint(num, 10, 31)
	if err != nil {
		return 0, 0, false
	}
	c, err := strconv.ParseUint(sum, 16, 32)
	if err != nil {
		return 0, 0, false
	}
	return int(n), uint32(c), true
}

// Name returns the name of k's epoch directory, "e-" and 32 hex digits: a
// hash of every field. The shared tier (package tier) names its epochs the
// same way.
func (k Key) Name() string { return k.dirName() }
