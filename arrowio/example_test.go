package arrowio_test

import (
	"fmt"

	"github.com/loaderd/loaderd/arrowio"
)

// A shard's layout is known before any pixel exists: workers write rows
// into the file's mapping, and OpenShard reads them in place.
func Example() {
	schema, err := arrowio.NewSchema(arrowio.ImageSpec(2, 2, false), map[string]string{"loaderd.dataset": "train"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(schema.Field(2).Type.(*arrowio.FixedShapeTensorType).Serialize())

	l, err := arrowio.NewShardLayout(schema, 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	data := l.Skeleton() // in loaderd: WriteSkeleton to a file, then mmap it
	for p := range 3 {
		copy(l.Row(data, p), []byte{byte(p), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11})
		l.SetIndex(data, p, uint64(40+p))
		l.SetLabel(data, p, int64(p%2))
	}
	v, err := arrowio.OpenShard(data, schema, 3)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(v.Rows(), v.Index(2), v.Label(2), v.Row(2)[:4])

	m, err := arrowio.BatchMessage(schema,
		[]uint64{v.Index(0), v.Index(2)},
		[]int64{v.Label(0), v.Label(2)},
		[][]byte{v.Row(0), v.Row(2)})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.BodyLen, "body bytes")
	// Output:
	// {"shape":[2,2,3],"dim_names":["H","W","C"]}
	// 3 42 0 [2 1 2 3]
	// 56 body bytes
}
