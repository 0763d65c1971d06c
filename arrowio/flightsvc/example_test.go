package flightsvc_test

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/status"

	"github.com/loaderd/loaderd/arrowio"
	"github.com/loaderd/loaderd/arrowio/flightsvc"
	"github.com/loaderd/loaderd/service"
)

func ExampleParseRequest() {
	req, err := flightsvc.ParseRequest([]byte(`{"dataset":"train","epoch":3,"rank":1,"world_size":8}`))
	fmt.Printf("%+v %v\n", req, err)

	_, err = flightsvc.ParseRequest([]byte(`{"dataset":"train","rank":8,"world_size":8}`))
	var fe *service.FieldError
	fmt.Println(errors.As(err, &fe), fe.Field, status.Code(flightsvc.StatusOf(err)))
	// Output:
	// {Dataset:train Epoch:3 BatchSize:256 Rank:1 WorldSize:8 DropLast:false StartBatch:0 Shuffle:true GPU: Fingerprint: Transport:} <nil>
	// true rank InvalidArgument
}

func ExampleStatusOf() {
	err := fmt.Errorf("loader: cat/7.jpg: %w", service.ErrDataLoss)
	fmt.Println(status.Code(flightsvc.StatusOf(err)))
	// Output: DataLoss
}

// A Go trainer reads each batch as tensors over the record's buffers
// (Client.FetchTensors hands them out the same way).
func ExampleTensorsOf() {
	schema, _ := arrowio.NewSchema(arrowio.ImageSpec(2, 2, false), nil)
	bb, _ := arrowio.NewBatchBuilder(nil, schema, 2)
	defer bb.Release()
	for i := range 2 {
		img, _ := bb.Next(uint64(40+i), int64(i))
		img[0] = byte(100 + i) // pixel (0, 0), channel R
	}
	rec := bb.NewRecord()
	defer rec.Release()

	ts, err := flightsvc.TensorsOf(rec)
	if err != nil {
		fmt.Println(err)
		return
	}
	r, _ := ts.Images.At(1, 0, 0, 0)
	fmt.Println(ts.Images.Shape(), ts.Images.Dtype(), ts.Index, ts.Label, r)
	// Output:
	// (2, 2, 2, 3) uint8 [40 41] [0 1] 101
}
