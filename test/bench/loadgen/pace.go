package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// pace calls launch(i, due) for i in [0, total), each at start + i·interval or as soon after as
// it can, whatever happened to earlier requests (open loop).
//
// The ticks come from a periodic timerfd read through Go's network poller. Go's own timers are
// no good here: an idle runtime rounds a sub-millisecond timer up to a whole millisecond (the
// poller's epoll timeout is in ms), which at 2,000 req/s would add up to 1 ms of schedule lag and
// bunch requests in pairs. A timerfd is an fd like a socket: epoll reports its expiry at once.
func pace(start time.Time, interval time.Duration, total int, launch func(i int, due time.Time)) error {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("timerfd_create: %w", err)
	}
	// Non-blocking, so os.NewFile registers it with the poller: reads park the goroutine only.
	tf := os.NewFile(uintptr(fd), "timerfd")
	defer tf.Close()
	first := time.Until(start)
	if first <= 0 {
		first = time.Nanosecond // zero would disarm the timer
	}
	spec := unix.ItimerSpec{
		Value:    unix.NsecToTimespec(first.Nanoseconds()),
		Interval: unix.NsecToTimespec(interval.Nanoseconds()),
	}
	if err := unix.TimerfdSettime(fd, 0, &spec, nil); err != nil {
		return fmt.Errorf("timerfd_settime: %w", err)
	}
	var buf [8]byte
	for i := 0; i < total; {
		if _, err := tf.Read(buf[:]); err != nil {
			return fmt.Errorf("timerfd read: %w", err)
		}
		// The number of expirations since the last read: more than one when this goroutine ran late.
		for n := binary.NativeEndian.Uint64(buf[:]); n > 0 && i < total; n-- {
			launch(i, start.Add(time.Duration(i)*interval))
			i++
		}
	}
	return nil
}
