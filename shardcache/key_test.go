package shardcache

import (
	"testing"
)

func TestKeyDirName(t *testing.T) {
	tests := []struct {
		name string
		a, b Key
	}{
		{name: "field boundary", a: Key{Dataset: "ab", Pipeline: "c"}, b: Key{Dataset: "a", Pipeline: "bc"}},
		{name: "seed", a: Key{Dataset: "d", Pipeline: "p", Seed: 1}, b: Key{Dataset: "d", Pipeline: "p", Seed: 2}},
		{name: "epoch", a: Key{Dataset: "d", Pipeline: "p", Epoch: 1}, b: Key{Dataset: "d", Pipeline: "p", Epoch: 10}},
		{name: "seed and epoch digits", a: Key{Seed: 11, Epoch: 1}, b: Key{Seed: 1, Epoch: 11}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			da, db := tc.a.dirName(), tc.b.dirName()
			if da == db {
				t.Errorf("%v and %v share directory %s", tc.a, tc.b, da)
			}
			if !isEpochDirName(da) || !isEpochDirName(db) {
				t.Errorf("isEpochDirName(%s), isEpochDirName(%s) = false", da, db)
			}
			if da != tc.a.dirName() {
				t.Error("dirName is not stable")
			}
		})
	}
	if got, want := (Key{Dataset: "d1", Pipeline: "p2", Seed: 3, Epoch: 4}).String(), "dataset=d1 pipeline=p2 seed=3 epoch=4"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
}

func TestParseShardName(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		shard int
		crc   uint32
		ok    bool
	}{
		{name: "ours", file: shardName(12, 0xdeadbeef), shard: 12, crc: 0xdeadbeef, ok: true},
		{name: "seven digits", file: "shard-1234567.0000000a.arrow", shard: 1234567, crc: 10, ok: true},
		{name: "temporary", file: "shard-000001.123.tmp", ok: false},
		{name: "short crc", file: "shard-000001.abc.arrow", ok: false},
		{name: "not hex", file: "shard-000001.zzzzzzzz.arrow", ok: false},
		{name: "negative", file: "shard--00001.00000000.arrow", ok: false},
		{name: "meta", file: metaName, ok: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			shard, crc, ok := parseShardName(tc.file)
			if ok != tc.ok || (ok && (shard != tc.shard || crc != tc.crc)) {
				t.Errorf("parseShardName(%q) = %d, %08x, %v; want %d, %08x, %v", tc.file, shard, crc, ok, tc.shard, tc.crc, tc.ok)
			}
		})
	}
}

func FuzzParseShardName(f *testing.F) {
	f.Add("shard-000001.0badf00d.arrow")
	f.Add("shard-.arrow")
	f.Fuzz(func(t *testing.T, name string) {
		shard, crc, ok := parseShardName(name)
		if !ok {
			return
		}
		if shard < 0 {
			t.Fatalf("parseShardName(%q) gave negative shard %d", name, shard)
		}
		if s2, c2, ok2 := parseShardName(shardName(shard, crc)); !ok2 || s2 != shard || c2 != crc {
			t.Fatalf("round trip of %q: %d, %08x, %v", name, s2, c2, ok2)
		}
	})
}
