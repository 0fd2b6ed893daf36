// PAC helper functions (Netscape/Microsoft PAC API) for evaluating a PAC
// file in node, and a runner: node pac_shim.js <pac file> <cases.json>.
// cases.json is [[url, host], ...]; prints a JSON array of results.
'use strict';

function isPlainHostName(host) { return host.indexOf('.') < 0 && host.indexOf(':') < 0; }
function dnsDomainIs(host, domain) {
  return host.length >= domain.length && host.substring(host.length - domain.length) === domain;
}
function localHostOrDomainIs(host, hostdom) {
  return host === hostdom || hostdom.lastIndexOf(host + '.', 0) === 0;
}
function dnsDomainLevels(host) { return host.split('.').length - 1; }
function isIPv4(s) { return /^\d{1,3}(\.\d{1,3}){3}$/.test(s); }
// The test resolver knows no names: only IP literals resolve.
function dnsResolve(host) { return isIPv4(host) ? host : null; }
function isResolvable(host) { return dnsResolve(host) !== null; }
function myIpAddress() { return '127.0.0.1'; }
function ipToInt(ip) {
  var p = ip.split('.');
  return (((+p[0]) << 24) >>> 0) + ((+p[1]) << 16) + ((+p[2]) << 8) + (+p[3]);
}
function isInNet(host, pattern, mask) {
  var ip = dnsResolve(host);
  if (ip === null) return false;
  return ((ipToInt(ip) & ipToInt(mask)) >>> 0) === ((ipToInt(pattern) & ipToInt(mask)) >>> 0);
}
function shExpMatch(str, shexp) {
  var re = '^' + shexp.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$';
  return new RegExp(re).test(str);
}
function weekdayRange() { return true; }
function dateRange() { return true; }
function timeRange() { return true; }
function alert(msg) { process.stderr.write(String(msg) + '\n'); }

if (require.main === module) {
  var fs = require('fs');
  var vm = require('vm');
  var pac = fs.readFileSync(process.argv[2], 'utf8');
  var cases = JSON.parse(fs.readFileSync(process.argv[3], 'utf8'));
  var sandbox = {
    isPlainHostName: isPlainHostName, dnsDomainIs: dnsDomainIs, localHostOrDomainIs: localHostOrDomainIs,
    dnsDomainLevels: dnsDomainLevels, dnsResolve: dnsResolve, isResolvable: isResolvable,
    myIpAddress: myIpAddress, isInNet: isInNet, shExpMatch: shExpMatch, weekdayRange: weekdayRange,
    dateRange: dateRange, timeRange: timeRange, alert: alert,
  };
  vm.createContext(sandbox);
  vm.runInContext(pac, sandbox, { filename: 'proxy.pac' });
  var out = cases.map(function (c) { return sandbox.FindProxyForURL(c[0], c[1]); });
  process.stdout.write(JSON.stringify(out));
}
