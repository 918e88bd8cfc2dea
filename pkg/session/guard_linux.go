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

// socketPeek copies what is unread in the socket into b without consuming
// it (recv MSG_PEEK|MSG_DONTWAIT); -1 on error.
func socketPeek(fd uintptr, b []byte) int {
	n, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	if errno != 0 {
		return -1
	}
	return int(n)
}
