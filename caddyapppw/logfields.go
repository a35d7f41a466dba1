package caddyapppw

import (
	"sync"

	"go.uber.org/zap"
)

// logFields are the arrays the request log line's fields are put in
// (api.go, logRequest): room for all of them, the cause included. Pooled,
// the line costs no allocation of its own, where a slice of them was the
// largest allocation of a rejected request. A zap core serialises the
// fields before Write returns (the observer of the tests copies them), so
// the array is free again once the line is written.
var logFields = sync.Pool{New: func() any { return new([8]zap.Field) }}

func getLogFields() *[8]zap.Field { return logFields.Get().(*[8]zap.Field) }

// putLogFields clears lf, so that the pool holds no request's values,
// and gives it back.
func putLogFields(lf *[8]zap.Field) {
	*lf = [8]zap.Field{}
	logFields.Put(lf)
}
