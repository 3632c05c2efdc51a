package bridge

import (
	"github.com/fcgi-bridge/fcgi-bridge/conf"
	"github.com/fcgi-bridge/fcgi-bridge/fcgi"
)

// ServerLimits turns the [server] table into the fcgi server's limits, so
// the command does not need to know their correspondence.
func ServerLimits(s conf.Server) fcgi.Limits {
	return fcgi.Limits{
		MaxConns:             s.MaxConns,
		MaxReqsPerConn:       s.MaxReqsPerConn,
		MaxReqs:              s.MaxReqs,
		MaxParamsBytes:       int(s.MaxParamsBytes),
		MaxParamsPairs:       s.MaxParamsPairs,
		MaxNameLen:           int(s.MaxNameLen),
		MaxValueLen:          int(s.MaxValueLen),
		ParamsTimeout:        s.ParamsTimeout.Std(),
		InputIdleTimeout:     s.InputIdleTimeout.Std(),
		WriteTimeout:         s.WriteTimeout.Std(),
		KeepAliveIdleTimeout: s.KeepAliveIdleTimeout.Std(),
		LingerTimeout:        s.LingerTimeout.Std(),
		InputBuffer:          int(s.InputBuffer),
		MaxStderr:            int(s.MaxStderr),
	}
}
