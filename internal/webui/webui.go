package webui

import (
	"bytes"
	_ "embed"
	"html/template"
)

//go:embed cordon.css
var css string

// CSS is the shared stylesheet, for a <style> element or a served file.
func CSS() template.CSS { return template.CSS(css) }

// CSSBytes is the stylesheet as served at a URL.
func CSSBytes() []byte { return []byte(css) }

// Logo is the Cordon mark (a shield with a check), 22 px, decorative.
const Logo template.HTML = `<svg class="logo-mark" width="22" height="22" viewBox="0 0 22 22" aria-hidden="true" focusable="false"><path d="M11 1 20 5v6c0 5.2-3.8 9.1-9 10-5.2-.9-9-4.8-9-10V5z" fill="#3b6fd8"/><path d="M6.5 11.2 9.6 14.3 15.5 8.4" stroke="#fff" stroke-width="2" fill="none" stroke-linecap="round" stroke-linejoin="round"/></svg>`

// Item is one entry of the main navigation.
type Item struct {
	// Key names the page for Nav's active argument.
	Key   string
	Label string
	Href  string
	// Section starts a new labelled group before this item.
	Section string
	// Icon is an SVG path (24x24 viewBox, stroked).
	Icon string
}

// Items is the main navigation: the console pages, then the reports.
var Items = []Item{
	{Key: "overview", Label: "Overview", Href: "/ui/", Icon: "M3 12 12 3l9 9M5 10v10h5v-6h4v6h5V10"},
	{Key: "policy", Label: "Policy", Href: "/ui/policy", Section: "Policy", Icon: "M12 2 20 6v6c0 5-3.5 8.5-8 10-4.5-1.5-8-5-8-10V6z"},
	{Key: "changes", Label: "Change requests", Href: "/ui/changes", Icon: "M6 3v12M6 21a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM18 9a3 3 0 1 0 0-6 3 3 0 0 0 0 6zM18 9c0 6-12 3-12 9"},
	{Key: "reviews", Label: "Review requests", Href: "/ui/reviews", Icon: "M4 4h16v12H8l-4 4z"},
	{Key: "lists", Label: "Lists", Href: "/ui/lists", Section: "Directory", Icon: "M8 6h13M8 12h13M8 18h13M3 6h.01M3 12h.01M3 18h.01"},
	{Key: "users", Label: "Users", Href: "/ui/users", Icon: "M16 21v-2a4 4 0 0 0-8 0v2M12 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8z"},
	{Key: "groups", Label: "Groups", Href: "/ui/groups", Icon: "M17 21v-2a4 4 0 0 0-4-4H5a4 4 0 0 0-4 4v2M9 11a4 4 0 1 0 0-8 4 4 0 0 0 0 8zM23 21v-2a4 4 0 0 0-3-3.9M16 3.1a4 4 0 0 1 0 7.8"},
	{Key: "locations", Label: "Locations", Href: "/ui/locations", Icon: "M12 21s-7-6.5-7-12a7 7 0 0 1 14 0c0 5.5-7 12-7 12zM12 11a2 2 0 1 0 0-4 2 2 0 0 0 0 4z"},
	{Key: "lookup", Label: "Lookup", Href: "/ui/lookup", Section: "Investigate", Icon: "M11 19a8 8 0 1 0 0-16 8 8 0 0 0 0 16zM21 21l-4.3-4.3"},
	{Key: "audit", Label: "Audit log", Href: "/ui/audit", Icon: "M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8zM14 2v6h6M8 13h8M8 17h8"},
	{Key: "feeds", Label: "Feeds", Href: "/ui/feeds", Icon: "M4 11a9 9 0 0 1 9 9M4 4a16 16 0 0 1 16 16M5 20a1 1 0 1 0 0-2 1 1 0 0 0 0 2z"},
	{Key: "reports", Label: "Reports", Href: "/reports", Section: "Reports", Icon: "M3 3v18h18M7 15l4-4 3 3 5-6"},
}

var navTmpl = template.Must(template.New("nav").Parse(`<a class="brand" href="/ui/">{{.Logo}}<span>Cordon</span></a>
<nav class="mainnav" aria-label="Main">
<ul>{{range .Items}}{{if .Section}}</ul><div class="sect" aria-hidden="true">{{.Section}}</div><ul>{{end}}
<li><a href="{{.Href}}"{{if eq .Key $.Active}} aria-current="page"{{end}}><svg width="16" height="16" viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path d="{{.Icon}}"/></svg>{{.Label}}</a></li>{{end}}
</ul>
</nav>`))

// Nav renders the brand and the main navigation with the page named by
// active marked as the current one (aria-current="page").
func Nav(active string) template.HTML {
	var b bytes.Buffer
	if err := navTmpl.Execute(&b, struct {
		Logo   template.HTML
		Items  []Item
		Active string
	}{Logo, Items, active}); err != nil {
		panic("webui: nav template: " + err.Error()) // static data; cannot fail
	}
	return template.HTML(b.String())
}
