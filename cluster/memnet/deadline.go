package memnet

import (
	"sync"
	"time"
)

// deadline is a settable I/O deadline, modelled on the one behind net.Pipe.
// Its zero value has no deadline.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed once the deadline has passed
}

// chLocked returns the current cancel channel, creating it if needed.
func (d *deadline) chLocked() chan struct{} {
	if d.cancel == nil {
		d.cancel = make(chan struct{})
	}
	return d.cancel
}

// set arms the deadline; the zero time clears it.
func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	ch := d.chLocked()
	if d.timer != nil && !d.timer.Stop() {
		<-ch // the timer fired; wait for its callback to close ch
	}
	d.timer = nil

	closed := isClosed(ch)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			ch = make(chan struct{})
			d.cancel = ch
		}
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	if !closed {
		close(ch)
	}
}

// wait returns a channel that is closed when the deadline passes.
func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.chLocked()
}

// expired reports whether the deadline has passed.
func (d *deadline) expired() bool {
	return isClosed(d.wait())
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
