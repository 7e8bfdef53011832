package core

import (
	"errors"
	"fmt"
)

// ErrorCode classifies an Error. Each adapter maps codes to its protocol once
// (the HTTP layer: invalid 400, unauthorized 401, not_found 404, conflict 409,
// too_large 413, rate_limited 429, unavailable 503, internal 500).
type ErrorCode string

// Error codes.
const (
	CodeInvalid      ErrorCode = "invalid"
	CodeUnauthorized ErrorCode = "unauthorized"
	CodeNotFound     ErrorCode = "not_found"
	CodeConflict     ErrorCode = "conflict"
	CodeTooLarge     ErrorCode = "too_large"
	CodeUnavailable  ErrorCode = "unavailable"
	CodeRateLimited  ErrorCode = "rate_limited"
	CodeUpstream     ErrorCode = "upstream"
	CodeInternal     ErrorCode = "internal"
)

// Error is hppd's error type. Message is safe to show to an API client; Field
// names the offending request field for CodeInvalid.
type Error struct {
	Code    ErrorCode
	Field   string
	Message string
	Err     error // cause, never shown to clients
}

func (e *Error) Error() string {
	s := string(e.Code)
	if e.Field != "" {
		s += " " + e.Field
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns an *Error with a formatted message.
func Errorf(code ErrorCode, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Invalid returns a CodeInvalid error naming field.
func Invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// ErrNotFound is returned by stores for unknown ids.
var ErrNotFound = &Error{Code: CodeNotFound, Message: "not found"}

// ErrorCodeOf returns the code of err, CodeInternal for foreign errors.
func ErrorCodeOf(err error) ErrorCode {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return CodeInternal
}

// IsNotFound reports whether err is a CodeNotFound error.
func IsNotFound(err error) bool { return err != nil && ErrorCodeOf(err) == CodeNotFound }

// KlarnaError is what hppd keeps of a refusal by Klarna, on a session or charge.
type KlarnaError struct {
	HTTPStatus    int      `json:"http_status,omitempty"`
	Code          string   `json:"error_code,omitempty"`
	Messages      []string `json:"error_messages,omitempty"`
	CorrelationID string   `json:"correlation_id,omitempty"`
	Operation     string   `json:"operation,omitempty"`
}
