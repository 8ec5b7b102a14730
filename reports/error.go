package reports

// ErrorResult is the JSON body every command prints on stdout with --json when it fails before it
// has a result of its own (a missing path, a bad flag, a locked board): the usual envelope, then
// the error. One shape for every command, described by schema/error.schema.json.
type ErrorResult struct {
	Error ErrorInfo `json:"error"`
}

// ErrorInfo is the error of an ErrorResult.
type ErrorInfo struct {
	Code    int    `json:"code"`           // the exit status
	Status  string `json:"status"`         // its name: warning, corrupt, inconclusive, usage, operational
	Message string `json:"message"`        // the one line also printed on stderr
	Path    string `json:"path,omitempty"` // the file or directory the error is about, when it names one
}
