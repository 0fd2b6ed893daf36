#!/usr/bin/env bash
# Rebuilds the committed feed samples of this folder from a copy of the
# public feed data they were cut from (see ATTRIBUTION.md for every source,
# upstream commit and licence). Run by hand; tests never need the data:
#
#	bash internal/testutil/testdata/make-samples.sh /path/to/data
#
# Every sample is an unmodified excerpt: whole files, or whole lines kept
# in their upstream order (head, tail or named line ranges). Files above
# 40 KiB are stored gzip-compressed (gzip -9n, reproducible); the test
# helper testutil.Data decompresses them.
set -euo pipefail
src=${1:?usage: make-samples.sh DATA-FOLDER}
out=$(cd "$(dirname "$0")" && pwd)

# put REL CMD...: runs CMD with the source file of REL as its last
# argument and writes its output to the sample REL.
put() {
	local rel=$1
	shift
	mkdir -p "$out/$(dirname "$rel")"
	"$@" "$src/$rel" >"$out/$rel"
	if [ "$(wc -c <"$out/$rel")" -gt 40960 ]; then
		gzip -9nf "$out/$rel"
	else
		rm -f "$out/$rel.gz"
	fi
}
# first N FILE: every line up to the N-th entry (a line that is neither
# empty nor a # or ! comment), so the header stays.
first() { awk -v n="$1" '!/^[#!]/ && NF { if (k == n) exit; k++ } { print }' "$2"; }

# hosts format
put urlhaus/hosts cat
put stevenblack/hosts sed -n '1,2268p;115465,115477p;119315,$p'
put stevenblack/license.txt cat
put stevenblack/extensions/porn/brijrajparmar27/hosts cat
put stevenblack/extensions/fakenews/hosts tail -n 150
put nocoin/hosts.txt cat
put nocoin/LICENSE cat

# the same Block List Project lists in four syntaxes
for f in ransomware.txt alt-version/ransomware-nl.txt adguard/ransomware-ags.txt dnsmasq-version/ransomware-dnsmasq.txt; do
	put "blocklistproject/$f" cat
done
for f in scam.txt alt-version/scam-nl.txt adguard/scam-ags.txt dnsmasq-version/scam-dnsmasq.txt; do
	put "blocklistproject/$f" first 1000
done
put blocklistproject/alt-version/crypto-nl.txt cat
put blocklistproject/alt-version/phishing-nl.txt first 2000
put blocklistproject/malware.ip first 500
put blocklistproject/LICENSE cat

# AdBlock Plus
put nocoin/nocoin.txt cat
put nocoin/nocoin-ublock.txt cat

# UT1 directories (domains, urls, expressions, usage)
put ut1/blacklists/gambling/domains head -n 1500
put ut1/blacklists/gambling/urls cat
put ut1/blacklists/gambling/usage cat
put ut1/blacklists/dating/domains head -n 800
put ut1/blacklists/dating/urls cat
put ut1/blacklists/dating/usage cat
put ut1/blacklists/adult/urls head -n 300
put ut1/blacklists/adult/expressions cat
put ut1/blacklists/adult/very_restrictive_expression cat
put ut1/blacklists/adult/usage cat
put ut1/blacklists/dynamic-dns/domains head -n 400
put ut1/blacklists/dynamic-dns/usage cat
put ut1/blacklists/publicite/domains sed -n '1,200p;2150,2180p'
put ut1/blacklists/publicite/usage cat
put ut1/blacklists/phishing/urls head -n 600
put ut1/blacklists/phishing/usage cat
put ut1/blacklists/malware/urls head -n 300
put ut1/blacklists/malware/expressions cat
put ut1/blacklists/malware/usage cat

# IP lists
put spamhaus/drop.txt head -n 100
put spamhaus/edrop.txt head -n 50
put spamhaus/drop_ipv6.txt cat
put spamhaus/License.md cat
put feodo/ipblocklist.csv cat
put ipsum/ipsum.txt first 500
put ipsum/LICENSE cat
put x4bnet/output/datacenter/ipv6.txt head -n 500
put x4bnet/output/vpn/ipv6.txt head -n 100

# benign names (benchmark misses; the top list is bundled, categorizer/bundled)
put opendns/opendns-random-domains.txt cat
put opendns/README.md cat

# MaxMind DB test databases, and deliberately broken ones
for f in GeoIP2-Country-Test GeoLite2-Country-Test GeoIP2-City-Test GeoLite2-City-Test GeoLite2-ASN-Test \
	GeoIP2-City-Test-Broken-Double-Format GeoIP2-City-Test-Invalid-Node-Count \
	MaxMind-DB-test-broken-pointers-24 MaxMind-DB-test-broken-search-tree-24; do
	put "maxmind/test-data/$f.mmdb" cat
done
(cd "$src" && find maxmind/bad-data -name '*.mmdb') | while read -r f; do put "$f" cat; done
put maxmind/LICENSE-MIT cat
