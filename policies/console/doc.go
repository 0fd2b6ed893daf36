// Package console is Cordon's admin console: the web pages at /ui/ where
// the network and security teams see and change the shared policy
// together (overview, policy and its history, change requests, lists,
// users, groups, locations, review requests, lookup, audit log, feeds).
//
// The console has no back end of its own. Every page and every form
// becomes one or more requests to the admin API's http.Handler, made
// in-process with the signed-in operator's bearer token, so every role
// check is the API's and a script can do exactly what a page does. Pages
// are rendered on the server with html/template, work without JavaScript
// for reading, and use a little embedded JavaScript only for the YAML
// editor's live validation. Everything (templates, stylesheet, script) is
// embedded in the binary.
//
// Sign-in trades an API token for a session: a random session ID in an
// HttpOnly, SameSite=Strict cookie (Secure over TLS) that maps, in this
// process's memory, to the token. The token never reaches the page.
// Sessions end on sign-out, after IdleTimeout without use, after MaxAge,
// or when the API stops accepting the token (revoked). Every form carries
// the session's CSRF token and every unsafe request is also checked with
// net/http's cross-origin protection.
//
// The console shows only the buttons the viewer's role may use, as the
// API tells it (GET /api/v1/me and, for change requests, the actions the
// API lists); a forged request is still refused by the API.
package console
