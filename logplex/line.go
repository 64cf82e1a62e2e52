// Package logplex collects each app's log stream from its dynos, the
// router and the platform, keeps a recent history, serves log sessions and
// tails, and delivers lines to log drains.
package logplex

import (
	"context"
	"log/slog"
	"time"
)

// Sources of a line: what Heroku's logs show as app[...] or heroku[...].
const (
	SourceApp    = "app"
	SourceHeroku = "heroku"
)

// Line is one log line on an app's channel.
type Line struct {
	AppID string
	// AppName is informational (the channel is the app id).
	AppName string
	Time    time.Time
	Source  string // SourceApp or SourceHeroku
	Proc    string // web.1, run.4821, router, api
	Text    string
}

// Sink receives log lines. Emit never blocks the caller for long: a sink
// that cannot keep up drops lines and says so in the stream.
type Sink interface {
	Emit(Line)
}

// SlogSink writes lines to a structured logger (a node without a log
// pipeline, or tests).
type SlogSink struct{ Log *slog.Logger }

// Emit implements Sink.
func (s SlogSink) Emit(l Line) {
	s.Log.LogAttrs(context.Background(), slog.LevelInfo, l.Text,
		slog.String("app", l.AppName), slog.String("source", l.Source+"["+l.Proc+"]"))
}
