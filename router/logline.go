package router

import (
	"strconv"

	"github.com/slipwayhq/slipway/logplex"
)

// appendLogLine appends the request's router log line in Heroku's format:
//
//	at=info method=GET path="/" host=demo.example.com request_id=... fwd="10.0.0.1" dyno=web.1 connect=1ms service=18ms status=200 bytes=13 protocol=https
//
// Errors start with sock= (H18, H27, H28), at=error or at=warning, and
// code=H12 desc="Request timeout"; fields the router does not know stay
// empty (dyno= connect=).
func (rt *Router) appendLogLine(b []byte, rq *reqState) []byte {
	if rq.code != "" {
		info := rq.code.info()
		if info.sock != "" {
			b = append(b, "sock="...)
			b = append(b, info.sock...)
			b = append(b, ' ')
		}
		b = append(b, "at="...)
		b = append(b, info.level...)
		b = append(b, " code="...)
		b = append(b, rq.code...)
		b = append(b, ` desc="`...)
		b = append(b, info.desc...)
		b = append(b, '"')
	} else {
		b = append(b, "at=info"...)
	}
	b = append(b, " method="...)
	b = appendSafe(b, rq.method)
	b = append(b, ` path="`...)
	b = appendSafe(b, rq.uri)
	b = append(b, `" host=`...)
	b = appendSafe(b, rq.host)
	b = append(b, " request_id="...)
	b = append(b, rq.rid...)
	b = append(b, ` fwd="`...)
	b = appendSafeBytes(b, rq.fwd)
	b = append(b, `" dyno=`...)
	if rq.be != nil {
		b = append(b, rq.be.Name...)
	}
	b = append(b, " connect="...)
	if rq.be != nil {
		b = strconv.AppendInt(b, rq.connect.Milliseconds(), 10)
		b = append(b, "ms"...)
	}
	b = append(b, " service="...)
	if rq.be != nil {
		b = strconv.AppendInt(b, rq.service.Milliseconds(), 10)
		b = append(b, "ms"...)
	}
	b = append(b, " status="...)
	b = strconv.AppendInt(b, int64(rq.status), 10)
	b = append(b, " bytes="...)
	b = strconv.AppendInt(b, rq.bytes, 10)
	b = append(b, " protocol="...)
	b = append(b, rq.fe.proto...)
	return b
}

// appendSafe appends s with quotes, backslashes, spaces and control
// characters percent-encoded, so a field never breaks the line's syntax.
func appendSafe(b []byte, s []byte) []byte {
	const hexd = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c == '"' || c == '\\' || c == 0x7f {
			b = append(b, '%', hexd[c>>4], hexd[c&0xf])
			continue
		}
		b = append(b, c)
	}
	return b
}

func appendSafeBytes(b []byte, s []byte) []byte {
	for _, c := range s {
		if c == '"' || c == '\\' || c < ' ' {
			continue
		}
		b = append(b, c)
	}
	return b
}

func lineFor(rq *reqState, text string) logplex.Line {
	return logplex.Line{AppID: rq.app.ID, AppName: rq.app.Name, Time: rq.start, Source: logplex.SourceHeroku, Proc: "router", Text: text}
}
