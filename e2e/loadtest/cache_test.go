package main

import (
	"bufio"
	"net"
	"testing"
	"time"
)

// TestDelayProxyDelaysEachWay: an echo server behind the proxy answers a
// round trip no sooner than twice the delay, with the bytes intact and in
// order.
func TestDelayProxyDelaysEachWay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					c.Write(buf[:n])
				}
			}()
		}
	}()
	const delay = 2 * time.Millisecond
	p, err := startDelayProxy(ln.Addr().String(), delay)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	c, err := net.Dial("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rd := bufio.NewReader(c)
	for i, line := range []string{"PING\n", "second line\n", "third\n"} {
		t0 := time.Now()
		if _, err := c.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
		got, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if got != line {
			t.Fatalf("round trip %d: %q, want %q", i, got, line)
		}
		if rtt := time.Since(t0); rtt < 2*delay {
			t.Fatalf("round trip %d took %v, want at least %v", i, rtt, 2*delay)
		}
	}
}

func TestCmdStatsPerCheck(t *testing.T) {
	a := cmdStats{calls: map[string]float64{"evalsha": 10, "get": 10, "info": 5, "ping": 2}, usec: map[string]float64{"evalsha": 50}}
	b := cmdStats{calls: map[string]float64{"evalsha": 30, "get": 30, "info": 7, "ping": 6, "pexpireat": 4}, usec: map[string]float64{"evalsha": 150}}
	d := b.sub(a)
	d.requests = 1000
	all, scripts, us := d.perCheck()
	if all != (20+20+4+4)/1000.0 || scripts != 20/1000.0 || us != 5 {
		t.Fatalf("perCheck = %v %v %v", all, scripts, us)
	}
	if s := d.add(d); s.requests != 2000 || s.calls["get"] != 40 {
		t.Fatalf("add = %+v", s)
	}
}
