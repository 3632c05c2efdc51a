package fcgi

// commonParams interns the names web servers send with every request, so
// decoding PARAMS allocates for values only. Lookups with a []byte key
// converted in the index expression do not allocate.
var commonParams = func() map[string]string {
	names := []string{
		"AUTH_TYPE", "CONTENT_LENGTH", "CONTENT_TYPE", "DOCUMENT_ROOT", "DOCUMENT_URI",
		"FCGI_DATA_LENGTH", "FCGI_DATA_LAST_MOD", "GATEWAY_INTERFACE", "HTTPS",
		"HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING", "HTTP_ACCEPT_LANGUAGE", "HTTP_AUTHORIZATION",
		"HTTP_CACHE_CONTROL", "HTTP_CONNECTION", "HTTP_CONTENT_LENGTH", "HTTP_CONTENT_TYPE",
		"HTTP_COOKIE", "HTTP_HOST", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_NONE_MATCH",
		"HTTP_ORIGIN", "HTTP_REFERER", "HTTP_TRANSFER_ENCODING", "HTTP_USER_AGENT",
		"HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_REAL_IP", "HTTP_X_REQUESTED_WITH",
		"PATH_INFO", "PATH_TRANSLATED", "QUERY_STRING", "REDIRECT_STATUS", "REMOTE_ADDR",
		"REMOTE_HOST", "REMOTE_PORT", "REMOTE_USER", "REQUEST_METHOD", "REQUEST_SCHEME",
		"REQUEST_URI", "SCRIPT_FILENAME", "SCRIPT_NAME", "SERVER_ADDR", "SERVER_NAME",
		"SERVER_PORT", "SERVER_PROTOCOL", "SERVER_SOFTWARE",
	}
	m := make(map[string]string, len(names))
	for _, n := range names {
		m[n] = n
	}
	return m
}()

// paramName returns name as a string, shared for common names.
func paramName(name []byte) string {
	if s, ok := commonParams[string(name)]; ok {
		return s
	}
	return string(name)
}

// recordStrings turns the values of one PARAMS record into strings with a
// single allocation: the first value that lies within the record's content
// makes one string of the whole content, and every such value is a substring
// of it (a request's values used to cost an allocation each). Values that do
// not lie within content (a pair that straddled records, decoded from the
// pending buffer) are copied on their own. The record string lives as long as
// the request keeps any of its values; records are bounded by the params
// limits.
type recordStrings struct {
	content []byte
	all     string
	made    bool
}

func (rs *recordStrings) value(v []byte) string {
	if len(v) == 0 {
		return ""
	}
	off := cap(rs.content) - cap(v)
	if off < 0 || off+len(v) > len(rs.content) || &rs.content[off] != &v[0] {
		return string(v)
	}
	if !rs.made {
		rs.all, rs.made = string(rs.content), true
	}
	return rs.all[off : off+len(v)]
}
