package session

import (
	"encoding/binary"
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

// socketQueued is the socket's unread byte count (ioctl TIOCINQ); -1 on
// error.
func socketQueued(fd uintptr) int {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		return -1
	}
	return int(n)
}

// tcpInfoBytesReceived is the offset of tcpi_bytes_received in Linux's
// struct tcp_info (since Linux 4.1).
const tcpInfoBytesReceived = 128

// socketReceived is how many bytes the kernel has received on the TCP
// socket since it was opened (TCP_INFO tcpi_bytes_received).
func socketReceived(fd uintptr) (uint64, bool) {
	var b [256]byte
	l := uint32(len(b))
	_, _, errno := syscall.Syscall6(syscall.SYS_GETSOCKOPT, fd, syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 || l < tcpInfoBytesReceived+8 {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[tcpInfoBytesReceived:]), true
}
