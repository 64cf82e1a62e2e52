package router

import (
	"html"
	"net/http"
	"strconv"
	"strings"
)

// Code is a Heroku router error code.
type Code string

// The router's error codes (Heroku's H codes).
const (
	H10 Code = "H10"
	H11 Code = "H11"
	H12 Code = "H12"
	H13 Code = "H13"
	H14 Code = "H14"
	H15 Code = "H15"
	H17 Code = "H17"
	H18 Code = "H18"
	H19 Code = "H19"
	H21 Code = "H21"
	H25 Code = "H25"
	H26 Code = "H26"
	H27 Code = "H27"
	H28 Code = "H28"
	H80 Code = "H80"
	H99 Code = "H99"
)

// codeInfo is how an error is answered and logged.
type codeInfo struct {
	desc   string
	status int
	level  string // at=
	sock   string // sock= (client or backend), "" for none
}

func (c Code) info() codeInfo {
	switch c {
	case H10:
		return codeInfo{"App crashed", 503, "error", ""}
	case H11:
		return codeInfo{"Backlog too deep", 503, "error", ""}
	case H12:
		return codeInfo{"Request timeout", 503, "error", ""}
	case H13:
		return codeInfo{"Connection closed without response", 503, "error", ""}
	case H14:
		return codeInfo{"No web processes running", 503, "error", ""}
	case H15:
		return codeInfo{"Idle connection", 503, "error", ""}
	case H17:
		return codeInfo{"Poorly formatted HTTP response", 503, "error", ""}
	case H18:
		return codeInfo{"Server Request Interrupted", 503, "error", "backend"}
	case H19:
		return codeInfo{"Backend connection timeout", 503, "error", ""}
	case H21:
		return codeInfo{"Backend connection refused", 503, "error", ""}
	case H25:
		return codeInfo{"HTTP Restriction", 502, "error", ""}
	case H26:
		return codeInfo{"Request Error", 400, "error", ""}
	case H27:
		return codeInfo{"Client Request Interrupted", 499, "warning", "client"}
	case H28:
		return codeInfo{"Client Connection Idle", 499, "warning", "client"}
	case H80:
		return codeInfo{"Maintenance mode", 503, "info", ""}
	}
	return codeInfo{"Platform error", 503, "error", ""}
}

// Built-in pages, modelled on Heroku's.
const (
	pageAppError = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Application Error</title>
<style>html,body{margin:0;height:100%;font-family:sans-serif;color:#333}main{max-width:36em;margin:15vh auto;padding:0 1em}</style>
</head><body><main>
<h1>Application error</h1>
<p>An error occurred in the application and your page could not be served. If you are the application owner,
check your logs for details (<code>slipway logs --tail</code>).</p>
</main></body></html>
`
	pageMaintenance = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Offline for Maintenance</title>
<style>html,body{margin:0;height:100%;font-family:sans-serif;color:#333}main{max-width:36em;margin:15vh auto;padding:0 1em}</style>
</head><body><main>
<h1>Offline for maintenance</h1>
<p>This app is undergoing maintenance right now. Please check back later.</p>
</main></body></html>
`
	pageNoSuchApp = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>No such app</title>
<style>html,body{margin:0;height:100%;font-family:sans-serif;color:#333}main{max-width:36em;margin:15vh auto;padding:0 1em}</style>
</head><body><main>
<h1>There's nothing here, yet.</h1>
<p>No app is configured for this hostname.</p>
</main></body></html>
`
	pageNotSynced = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Starting</title>
<style>html,body{margin:0;height:100%;font-family:sans-serif;color:#333}main{max-width:36em;margin:15vh auto;padding:0 1em}</style>
</head><body><main>
<h1>This node is starting</h1>
<p>It is still catching up with the cluster. Please try again in a moment.</p>
</main></body></html>
`
	pageBadRequest = `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Bad Request</title></head><body><h1>Bad Request</h1></body></html>
`
)

// customPage wraps an app's page URL the way Heroku serves custom error
// pages: in a full-window iframe, so the router never fetches it.
func customPage(url string) string {
	u := html.EscapeString(url)
	return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title></title>
<style>html,body,iframe{margin:0;padding:0;border:0;width:100%;height:100%;overflow:hidden}</style>
</head><body><iframe src="` + u + `"></iframe></body></html>
`
}

// page is the body the router sends for an error code on an app.
func (a *App) page(c Code) string {
	switch c {
	case H80:
		if u := a.Pages.Maintenance; validPageURL(u) {
			return customPage(u)
		}
		return pageMaintenance
	case H26:
		return pageBadRequest
	}
	if u := a.Pages.Error; validPageURL(u) {
		return customPage(u)
	}
	return pageAppError
}

func validPageURL(u string) bool {
	return strings.HasPrefix(u, "https://") || strings.HasPrefix(u, "http://")
}

// writePage answers with a status and an HTML page.
func writePage(w http.ResponseWriter, status int, body string) int {
	h := w.Header()
	h["Content-Type"] = []string{"text/html; charset=utf-8"}
	h["Cache-Control"] = []string{"no-cache, no-store"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	n, _ := w.Write([]byte(body))
	return n
}
