// Package api holds sessiongate's API contracts as files, embedded so the
// binary serves exactly the document its tests validated against.
package api

import _ "embed"

// OpenAPI is the OpenAPI 3.1 document of the admin API (api/openapi.yaml).
//
//go:embed openapi.yaml
var OpenAPI []byte
