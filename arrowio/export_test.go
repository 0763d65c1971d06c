package arrowio

import "github.com/apache/arrow-go/v18/arrow"

// NewShardLayoutUncached lays out a shard without the cache, for benchmarks.
func NewShardLayoutUncached(schema *arrow.Schema, rows int) (*ShardLayout, error) {
	spec, err := SpecOf(schema)
	if err != nil {
		return nil, err
	}
	return newShardLayout(schema, spec, rows)
}
