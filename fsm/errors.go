package fsm

import (
	"errors"
	"fmt"
)

// Error codes carried in results. They are the Heroku Platform API error ids;
// the API layer maps them to HTTP statuses.
const (
	CodeBadRequest    = "bad_request"
	CodeNotFound      = "not_found"
	CodeConflict      = "conflict"
	CodeInvalidParams = "invalid_params"
	CodeForbidden     = "forbidden"
)

// Error is a rejection of a command (or of a request, when the API validates
// before proposing). It is part of the replicated result, so it must be
// deterministic: no wrapped I/O errors in here.
type Error struct {
	Code    string `json:"id"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error with a formatted message.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// AsError returns the *Error in err's chain, if any.
func AsError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return nil, false
}

func notFound(what string) *Error {
	return Errorf(CodeNotFound, "Couldn't find that %s.", what)
}

func invalid(format string, args ...any) *Error {
	return Errorf(CodeInvalidParams, format, args...)
}
