package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// probeClient returns a function that marks the server's bench probe (GET /mark on its unix
// socket) and returns the answer as it is; nil without a socket.
func probeClient(socket string) func() (json.RawMessage, error) {
	if socket == "" {
		return nil
	}
	c := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
		},
	}
	return func() (json.RawMessage, error) {
		res, err := c.Get("http://probe/mark")
		if err != nil {
			return nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			return nil, err
		}
		if res.StatusCode != http.StatusOK || !json.Valid(b) {
			return nil, fmt.Errorf("status %d: %.100s", res.StatusCode, b)
		}
		return b, nil
	}
}
