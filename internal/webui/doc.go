// Package webui is the look shared by Cordon's HTML pages: the admin
// console (policies/console) and the report pages (reports). It owns the
// stylesheet, the logo and the main navigation, all embedded in the
// binary (no CDN, nothing fetched at build or run time). It owns no page,
// no data and no authentication.
package webui
