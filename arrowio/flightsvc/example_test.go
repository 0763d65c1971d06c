package flightsvc_test

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/status"

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
	// {Dataset:train Epoch:3 BatchSize:256 Rank:1 WorldSize:8 DropLast:false StartBatch:0 Shuffle:true GPU:} <nil>
	// true rank InvalidArgument
}

func ExampleStatusOf() {
	err := fmt.Errorf("loader: cat/7.jpg: %w", service.ErrDataLoss)
	fmt.Println(status.Code(flightsvc.StatusOf(err)))
	// Output: DataLoss
}
