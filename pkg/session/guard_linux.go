package session

import (
	"syscall"
	"unsafe"
)

// socketEmpty reports whether the socket's receive queue is empty
// (ioctl TIOCINQ, a.k.a. FIONREAD); false if it cannot tell.
func socketEmpty(fd uintptr) bool {
	var n int32
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n)))
	return errno == 0 && n == 0
}
