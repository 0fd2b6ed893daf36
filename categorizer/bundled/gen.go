//go:build ignore

// gen rebuilds the bundled default feeds from a copy of the public feed
// data they were taken from (sources in ATTRIBUTION.md); run by hand, no
// test needs it:
//
//	go run ./categorizer/bundled/gen.go -data /path/to/data -out categorizer/bundled
//
// It gzips each chosen list and writes manifest.json, which DefaultFeeds
// reads. Only permissively licensed sources are chosen (see ATTRIBUTION.md).
package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
)

type feed struct {
	Name       string   `json:"name"`
	File       string   `json:"file"`
	Format     string   `json:"format"`
	Categories []string `json:"categories,omitempty"`
	Threat     bool     `json:"threat,omitempty"`
	From       []string `json:"from"`
	License    string   `json:"license"`
}

func main() {
	data := flag.String("data", "", "`folder` with a copy of the public feed data (required)")
	out := flag.String("out", "categorizer/bundled", "output directory")
	flag.Parse()
	if *data == "" {
		log.Fatal("gen: -data is required")
	}
	const blp = "Unlicense (Block List Project)"
	const ut1 = "CC BY-SA 4.0 (UT1, Université Toulouse Capitole)"
	feeds := []feed{
		{"urlhaus", "urlhaus-hosts.gz", "hosts", []string{"malware"}, true, []string{"urlhaus/hosts"}, "CC0 (abuse.ch URLhaus host file)"},
		{"blp-ransomware", "blp-ransomware.gz", "hosts", []string{"malware"}, true, []string{"blocklistproject/ransomware.txt"}, blp},
		{"blp-phishing", "blp-phishing.gz", "domains", []string{"phishing"}, true, []string{"blocklistproject/alt-version/phishing-nl.txt"}, blp},
		{"blp-scam", "blp-scam.gz", "hosts", []string{"scam"}, true, []string{"blocklistproject/scam.txt"}, blp},
		{"blp-malware-ip", "blp-malware-ip.gz", "ips", []string{"malware"}, true, []string{"blocklistproject/malware.ip"}, blp},
		{"blp-crypto", "blp-crypto.gz", "hosts", []string{"cryptomining"}, false, []string{"blocklistproject/crypto.txt"}, blp},
		{"blp-piracy", "blp-piracy.gz", "hosts", []string{"piracy"}, false, []string{"blocklistproject/piracy.txt", "blocklistproject/torrent.txt"}, blp},
		{"nocoin", "nocoin-hosts.gz", "hosts", []string{"cryptomining"}, false, []string{"nocoin/hosts.txt"}, "MIT (NoCoin adblock list)"},
		{"ipsum", "ipsum-level3.gz", "ips", []string{"malicious_ip"}, true, []string{"ipsum/levels/3.txt"}, "Unlicense (IPsum)"},
		{"x4bnet-vpn", "x4bnet-vpn.gz", "ips", []string{"vpn"}, false, []string{"x4bnet/output/vpn/ipv4.txt", "x4bnet/output/vpn/ipv6.txt"}, "MIT (X4BNet lists_vpn)"},
	}
	for _, c := range []struct{ dir, cat string }{
		{"gambling", "gambling"}, {"social_networks", "social_networks"}, {"dating", "dating"}, {"games", "games"},
		{"shopping", "shopping"}, {"vpn", "vpn"}, {"shortener", "shortener"}, {"audio-video", "streaming"},
		{"webmail", "webmail"}, {"chat", "chat"}, {"press", "news"}, {"sports", "sports"}, {"bank", "banking"},
		{"financial", "financial"}, {"filehosting", "filehosting"}, {"hacking", "hacking"}, {"drogue", "drugs"},
		{"agressif", "violence"}, {"lingerie", "lingerie"}, {"doh", "doh"}, {"dynamic-dns", "dynamic_dns"},
		{"remote-control", "remote_control"}, {"publicite", "ads"}, {"cryptojacking", "cryptomining"},
		{"stalkerware", "stalkerware"}, {"warez", "piracy"}, {"fakenews", "fakenews"}, {"ai", "ai"},
		{"jobsearch", "jobsearch"}, {"blog", "blog"}, {"forums", "forums"}, {"mixed_adult", "adult"},
		{"redirector", "proxy"}, {"download", "download"},
	} {
		if _, err := os.Stat(filepath.Join(*data, "ut1/blacklists", c.dir, "domains")); err == nil {
			feeds = append(feeds, feed{"ut1-" + c.dir, "ut1-" + c.dir + ".gz", "domains", []string{c.cat}, false, []string{"ut1/blacklists/" + c.dir + "/domains"}, ut1})
		}
	}
	for _, c := range []struct{ dir, cat string }{{"adult", "adult"}, {"gambling", "gambling"}, {"dating", "dating"}, {"games", "games"}} {
		feeds = append(feeds, feed{"ut1-" + c.dir + "-urls", "ut1-" + c.dir + "-urls.gz", "urls", []string{c.cat}, false, []string{"ut1/blacklists/" + c.dir + "/urls"}, ut1})
	}
	feeds = append(feeds,
		feed{"ut1-malware-urls", "ut1-malware-urls.gz", "urls", []string{"malware"}, true, []string{"ut1/blacklists/malware/urls"}, ut1},
		feed{"ut1-phishing-urls", "ut1-phishing-urls.gz", "urls", []string{"phishing"}, true, []string{"ut1/blacklists/phishing/urls"}, ut1},
	)
	var total int
	for _, f := range feeds {
		var raw bytes.Buffer
		for _, src := range f.From {
			b, err := os.ReadFile(filepath.Join(*data, src))
			if err != nil {
				log.Fatal(err)
			}
			raw.Write(b)
			if len(b) > 0 && b[len(b)-1] != '\n' {
				raw.WriteByte('\n')
			}
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(raw.Bytes())
		zw.Close()
		if err := os.WriteFile(filepath.Join(*out, f.File), gz.Bytes(), 0o644); err != nil {
			log.Fatal(err)
		}
		total += gz.Len()
	}
	// The popularity list of the newly-seen baseline (not a feed): the
	// OpenDNS top domains, public domain. The Umbrella list is not bundled:
	// it states no licence (see ATTRIBUTION.md).
	if b, err := os.ReadFile(filepath.Join(*data, "opendns/opendns-top-domains.txt")); err == nil {
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(b)
		zw.Close()
		if err := os.WriteFile(filepath.Join(*out, "popular-opendns-top.gz"), gz.Bytes(), 0o644); err != nil {
			log.Fatal(err)
		}
		total += gz.Len()
	} else {
		log.Fatal(err)
	}
	m, _ := json.MarshalIndent(feeds, "", "  ")
	if err := os.WriteFile(filepath.Join(*out, "manifest.json"), append(m, '\n'), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d feeds, %d bytes compressed\n", len(feeds), total)
}
