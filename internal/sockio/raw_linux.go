package sockio

import (
	"syscall"
	"unsafe"
)

// rawIO: reads and writes are raw system calls on this platform.
const rawIO = true

// rawRead is read(2) made without entering the scheduler's system-call
// path: fd is non-blocking, so the call never blocks.
func rawRead(fd uintptr, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawWrite is write(2), likewise.
func rawWrite(fd uintptr, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
