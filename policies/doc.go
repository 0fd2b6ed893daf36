// Package policies owns Cordon's one shared policy.
//
//   - The model: a YAML document (Policy) of settings, users, groups,
//     locations, custom lists and ordered rules; strict parsing (Parse) and
//     validation with line, field and reason (Validate). REFERENCE.md
//     documents every field.
//   - The decision: Compile turns a policy into bitmasks and sets
//     (Compiled), and Compiled.Decide decides one Request from its
//     categorizer Verdict, purely and without allocating.
//   - The Engine both adapters call: identity (Authenticate,
//     ClientPrincipal, TokenPrincipal), categorizer lookup, newly-seen,
//     GeoIP and Decide on atomically swapped snapshots (Check).
//   - Collaboration: the Service keeps numbered versions with author, time
//     and comment, diffs and rollbacks, directory and list edits, API
//     tokens with roles, the append-only audit log, review requests and
//     impact previews, on a Store (FileStore here, Redis in
//     policies/redisstore, which also tells every edge about new versions).
//   - Change requests between teams: a draft or a Patch of named parts
//     with an impact report, approval rules from the policy's settings
//     (never the author; emergency path for admins), stale detection and
//     three-way rebase with per-item conflicts, and staged rollouts that
//     serve the change to some locations or edges while the rest keeps the
//     live version (Engine.SetStage; one atomic state holds both), with
//     their observed effect and auto-abort. Stored on a ChangeStore.
//   - The edge registry: each serving process's heartbeat (EdgeStore),
//     carrying its versions, requests/s, added latency and decision counts
//     per policy version.
//   - The admin API (API, an http.Handler with bearer tokens and roles,
//     documented by the embedded openapi.json), its Go Client and the
//     `cordon policy` and `cordon change` subcommands (RunCLI,
//     RunChangeCLI).
//
// It deliberately does not speak any wire protocol (HTTP proxying and DNS
// live in proxy and proxy/dnsfilter), does not categorize destinations
// (categorizer) and does not aggregate access events (reports).
package policies
