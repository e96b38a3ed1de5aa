//go:build !linux

package sockio

import "errors"

// rawIO: elsewhere Wrap leaves connections as they are.
const rawIO = false

func rawRead(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }

func rawWrite(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }
