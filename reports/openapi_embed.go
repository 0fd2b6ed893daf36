package reports

import _ "embed"

//go:embed openapi-fragment.json
var openAPIFragment []byte

// OpenAPIFragment is the OpenAPI 3 description of the API routes (paths and
// schemas), merged by the admin API into /api/v1/openapi.json.
func OpenAPIFragment() []byte { return append([]byte(nil), openAPIFragment...) }
