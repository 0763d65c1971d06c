package service_test

import (
	"errors"
	"fmt"

	"github.com/loaderd/loaderd/service"
)

// A request field out of range is a FieldError, which the Flight transport
// answers with InvalidArgument naming the field.
func ExampleFieldError() {
	var err error = fmt.Errorf("loader: %w", &service.FieldError{Field: "rank", Reason: "must be in [0, world_size=2)"})
	var fe *service.FieldError
	fmt.Println(errors.Is(err, service.ErrInvalid), errors.As(err, &fe) && fe.Field == "rank")
	fmt.Println(err)
	// Output:
	// true true
	// loader: service: invalid "rank": must be in [0, world_size=2)
}

// A Batch's Release runs once, when nothing reads its rows any more.
func ExampleBatch() {
	b := &service.Batch{
		Index:   []uint64{7, 3},
		Label:   []int64{1, 0},
		Images:  [][]byte{{1, 2, 3}, {4, 5, 6}},
		Release: func() { fmt.Println("released") },
	}
	fmt.Println(b.Rows(), "rows")
	b.Release()
	// Output:
	// 2 rows
	// released
}
